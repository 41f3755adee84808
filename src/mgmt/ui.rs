//! The management web UI: one page, its script and its style, embedded in the binary and
//! served without credentials (the page asks for them, keeps them for the browser tab, and
//! sends them as HTTP Basic with each API call, as RabbitMQ's UI does).

use super::http::Response;

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// The page or one of its assets, for a GET of `segments`; None for everything else.
pub fn asset(method: &str, segments: &[String]) -> Option<Response> {
    if method != "GET" && method != "HEAD" {
        return None;
    }
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (content_type, body) = match seg.as_slice() {
        [] | ["index.html"] => ("text/html; charset=utf-8", INDEX),
        ["ui", "app.js"] => ("text/javascript; charset=utf-8", SCRIPT),
        ["ui", "app.css"] => ("text/css; charset=utf-8", STYLE),
        _ => return None,
    };
    Some(Response {
        status: 200,
        content_type,
        body: body.as_bytes().to_vec(),
        allow: None,
    })
}
