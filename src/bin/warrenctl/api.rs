//! Requests to the management API through warren::mgmt::client.

use crate::{Args, Res};
use serde_json::{Map, Value};

pub(crate) fn request(
    a: &Args,
    method: &str,
    path: &str,
    body: Option<Map<String, Value>>,
) -> Res<Value> {
    send(a, method, path, body.map(Value::Object), &[])
}

/// One request to the management API (warren::mgmt::client); the body of a 2xx answer as
/// JSON (Null when empty), or an error carrying the API's reason.
pub(crate) fn send(
    a: &Args,
    method: &str,
    path: &str,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> Res<Value> {
    let target = warren::mgmt::client::Target::new(
        format!("{}:{}", a.host, a.port),
        Some(&format!("{}:{}", a.username, a.password)),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let answer =
        runtime.block_on(target.send(method, &format!("/api/{path}"), body.as_ref(), extra))?;
    let (status, value) = (answer.status, answer.body);
    if (200..300).contains(&status) {
        return Ok(value);
    }
    let reason = value["reason"].as_str().map(str::to_string);
    Err(match status {
        401 => match reason {
            Some(r) if r != "Login failed" => format!("access refused: {r}"),
            _ => "access refused: wrong username or password (guest only from localhost)".into(),
        },
        404 => format!("not found: /api/{path}"),
        _ => format!(
            "{status}: {}",
            reason.unwrap_or_else(|| match &value {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            })
        ),
    })
}
