//! The management API's own view of a request and a response (the wire is hyper's, in
//! `server`): decoded path segments, query, credentials, body; status, JSON body.

#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// Percent-decoded path segments after the leading '/': "/api/queues/%2F/q" →
    /// ["api", "queues", "/", "q"].
    pub segments: Vec<String>,
    pub query: Query,
    pub authorization: Option<String>,
    /// The authenticated user (None on public paths).
    pub user: Option<std::sync::Arc<crate::auth::User>>,
    pub reason: Option<String>,
    pub body: Vec<u8>,
    /// Channels of every connection, gathered before routing for the paths that show them
    /// (asking connections is asynchronous; routing is not).
    pub channels: Option<
        Vec<(
            std::sync::Arc<crate::meta::ConnMeta>,
            Vec<crate::meta::ChannelSnapshot>,
        )>,
    >,
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
    /// The `allow` header of a 405.
    pub allow: Option<String>,
}

impl Response {
    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(v).unwrap_or_default(),
            allow: None,
        }
    }

    pub fn empty(status: u16) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: Vec::new(),
            allow: None,
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

/// Query pairs, percent-decoded.
pub type Query = Vec<(String, String)>;

/// The request target as percent-decoded path segments and query pairs.
pub fn target(path: &str, query: &str) -> Result<(Vec<String>, Query), Response> {
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_decode(s, false).ok_or_else(|| {
                Response::error(400, "bad_request", "bad percent-encoding in the path")
            })
        })
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
    Ok((segments, query))
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
