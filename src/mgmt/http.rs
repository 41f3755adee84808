//! Just enough HTTP/1.1 for the management API: one request per connection (httparse for the
//! head, Content-Length bodies), one response, then close. Limits keep a bad peer cheap.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 8 * 1024 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// Percent-decoded path segments after the leading '/': "/api/queues/%2F/q" →
    /// ["api", "queues", "/", "q"].
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub reason: Option<String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn query_flag(&self, key: &str) -> bool {
        self.query
            .iter()
            .any(|(k, v)| k == key && (v.is_empty() || v == "true"))
    }
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(v).unwrap_or_default(),
        }
    }

    pub fn empty(status: u16) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: Vec::new(),
        }
    }

    /// RabbitMQ's error body: {"error": ..., "reason": ...}.
    pub fn error(status: u16, error: &str, reason: impl Into<String>) -> Response {
        Response::json(
            status,
            &serde_json::json!({"error": error, "reason": reason.into()}),
        )
    }
}

/// Read one request; Err carries the response to send (400, 413, ...) or None to just close.
pub async fn read_request(stream: &mut TcpStream) -> Result<Request, Option<Response>> {
    let mut buf = Vec::with_capacity(4096);
    let (head_len, mut req, content_length) = loop {
        let mut chunk = [0u8; 4096];
        let n = match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Err(None),
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let (req, cl) = head(&parsed).map_err(Some)?;
                break (len, req, cl);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                return Err(Some(Response::error(
                    431,
                    "bad_request",
                    "header too large",
                )))
            }
            Err(e) => return Err(Some(Response::error(400, "bad_request", e.to_string()))),
        }
    };
    if content_length > MAX_BODY {
        return Err(Some(Response::error(413, "bad_request", "body too large")));
    }
    let mut body = buf.split_off(head_len);
    while body.len() < content_length {
        let mut chunk = vec![0u8; (content_length - body.len()).min(64 * 1024)];
        match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Err(None),
            Ok(Ok(n)) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(content_length);
    req.body = body;
    Ok(req)
}

fn head(p: &httparse::Request<'_, '_>) -> Result<(Request, usize), Response> {
    let bad = |why: &str| Response::error(400, "bad_request", why);
    let target = p.path.ok_or_else(|| bad("no path"))?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false).ok_or_else(|| bad("bad percent-encoding in the path")))
        .collect::<Result<Vec<_>, _>>()?;
    let query = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (
                percent_decode(k, true).unwrap_or_default(),
                percent_decode(v, true).unwrap_or_default(),
            )
        })
        .collect();
    let mut content_length = 0usize;
    let mut authorization = None;
    let mut reason = None;
    for h in p.headers.iter() {
        let value = || String::from_utf8_lossy(h.value).trim().to_string();
        if h.name.eq_ignore_ascii_case("content-length") {
            content_length = value().parse().map_err(|_| bad("bad content-length"))?;
        } else if h.name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value());
        } else if h.name.eq_ignore_ascii_case("x-reason") {
            reason = Some(value());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Response::error(
                411,
                "bad_request",
                "chunked bodies are not supported; send Content-Length",
            ));
        }
    }
    Ok((
        Request {
            method: p.method.unwrap_or("GET").to_string(),
            segments,
            query,
            authorization,
            reason,
            body: Vec::new(),
        },
        content_length,
    ))
}

/// `plus_is_space` for query strings (form encoding); in a path '+' is itself.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

pub async fn write_response(stream: &mut TcpStream, r: &Response) {
    let reason = match r.status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    if r.status == 401 {
        out.push_str("www-authenticate: Basic realm=\"RabbitMQ Management\"\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&r.body);
    let _ = tokio::time::timeout(READ_TIMEOUT, stream.write_all(&bytes)).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_vhost_segments() {
        assert_eq!(percent_decode("%2F", false).as_deref(), Some("/"));
        assert_eq!(percent_decode("a%20b+c", true).as_deref(), Some("a b c"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%2", false), None);
    }
}
