//! Connecting one end of a shovel or federation link: `amqp://` as lapin does, `amqps://`
//! over rustls with RabbitMQ's URI TLS options read from files: `cacertfile` (the CAs to
//! trust; without it, the system's), `certfile` and `keyfile` (a client certificate, PEM).
//! `verify=verify_none` is refused rather than ignored: the peer is always verified.

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{Connection, ConnectionProperties};

/// RabbitMQ's direct connections: "amqp://" alone is this broker in the caller's vhost,
/// "amqp:///vhost" this broker in that vhost. Which vhost of this broker `uri` names, if it
/// names this broker (`own`: the caller's vhost).
pub fn local_vhost(uri: &str, own: &str) -> Option<String> {
    if uri == "amqp://" {
        return Some(own.to_string());
    }
    let rest = uri.strip_prefix("amqp:///")?;
    Some(decode(rest.split('?').next().unwrap_or_default()))
}

/// The URI to connect with: one naming this broker becomes `local` (this broker's URI in the
/// caller's vhost) in the vhost it names; any other is used as it is.
pub fn resolve(uri: &str, local: &str) -> String {
    if uri == "amqp://" {
        return local.to_string();
    }
    match uri.strip_prefix("amqp:///") {
        Some(rest) => {
            let base = local.rsplit_once('/').map_or(local, |(b, _)| b);
            format!("{base}/{rest}")
        }
        None => uri.to_string(),
    }
}

/// Percent-encode a URI component (a vhost, a user name).
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Percent-decode a URI component.
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of `key` in the URI's query, if any.
fn query(uri: &str, key: &str) -> Option<String> {
    let q = uri.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| decode(v))
    })
}

/// Files a URI's TLS options name are read whole: bounded, as a URI is operator input but a
/// path could name anything.
fn read(key: &str, path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    const MAX: u64 = 1 << 20;
    let f = std::fs::File::open(path).map_err(|e| format!("{key} {path}: {e}"))?;
    let mut out = Vec::new();
    f.take(MAX + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{key} {path}: {e}"))?;
    if out.len() as u64 > MAX {
        return Err(format!("{key} {path}: larger than 1 MiB"));
    }
    Ok(out)
}

/// The TLS settings an `amqps://` URI asks for.
pub fn tls_config(uri: &str) -> Result<OwnedTLSConfig, String> {
    let mut config = OwnedTLSConfig::default();
    if !uri.starts_with("amqps://") {
        return Ok(config);
    }
    if query(uri, "verify").as_deref() == Some("verify_none") {
        return Err("verify=verify_none is not supported: the peer's certificate is always verified (give its CA in cacertfile)".into());
    }
    if let Some(path) = query(uri, "cacertfile") {
        let pem = read("cacertfile", &path)?;
        config.cert_chain =
            Some(String::from_utf8(pem).map_err(|_| format!("cacertfile {path}: not PEM"))?);
    }
    match (query(uri, "certfile"), query(uri, "keyfile")) {
        (Some(cert), Some(key)) => {
            config.identity = Some(OwnedIdentity::PKCS8 {
                pem: read("certfile", &cert)?,
                key: read("keyfile", &key)?,
            });
        }
        (None, None) => {}
        _ => return Err("certfile and keyfile go together".into()),
    }
    Ok(config)
}

/// Connect to `uri` (its TLS options applied).
pub async fn connect(uri: &str, props: ConnectionProperties) -> Result<Connection, String> {
    let tls = tls_config(uri)?;
    let runtime = lapin::runtime::default_runtime().map_err(|e| e.to_string())?;
    Connection::connect_with_config(uri, props, tls, runtime)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_come_from_the_query() {
        assert!(
            tls_config("amqp://h?cacertfile=/nonexistent").is_ok(),
            "ignored for amqp"
        );
        let e = tls_config("amqps://h?cacertfile=/nonexistent%2Fca.pem").unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        assert!(tls_config("amqps://h?verify=verify_none").is_err());
        assert!(tls_config("amqps://h?certfile=/a").is_err());
        assert!(tls_config("amqps://h?verify=verify_peer").is_ok());
    }
}
