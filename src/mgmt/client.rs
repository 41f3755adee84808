//! A client for the management API, on hyper's HTTP/1 client: warrenctl and the tests speak to
//! the API through it (and through nothing hand-written). One request per connection.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;
use std::time::Duration;

/// Where and as whom.
#[derive(Debug, Clone)]
pub struct Target {
    /// host:port of the management listener.
    pub addr: String,
    /// "user:password" for HTTP Basic, or None.
    pub credentials: Option<String>,
    /// Deadline for the whole exchange.
    pub timeout: Duration,
}

/// An answer: status, and the body as JSON (Null when empty, a string when not JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Target {
    pub fn new(addr: impl Into<String>, credentials: Option<&str>) -> Self {
        Target {
            addr: addr.into(),
            credentials: credentials.map(str::to_string),
            timeout: Duration::from_secs(30),
        }
    }

    /// `method path` (path from the root, "/api/..."), with a JSON body and extra headers.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, String> {
        tokio::time::timeout(self.timeout, self.exchange(method, path, body, headers))
            .await
            .map_err(|_| format!("no answer from {} within {:?}", self.addr, self.timeout))?
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, String> {
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("cannot reach the management API at {}: {e}", self.addr))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(conn);
        let payload = body.map(Value::to_string).unwrap_or_default();
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.addr)
            .header("content-type", "application/json");
        if let Some(c) = &self.credentials {
            req = req.header(
                "authorization",
                format!("Basic {}", crate::auth::base64::encode(c.as_bytes())),
            );
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        driver.abort();
        let text = String::from_utf8_lossy(&bytes);
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.into_owned()))
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}
