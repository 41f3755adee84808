//! SASL responses: PLAIN and AMQPLAIN, as clients send them in connection.start-ok.

use crate::error::AmqpError;
use amq_protocol::types::{AMQPValue, FieldTable};

/// Credentials extracted from a SASL response.
#[derive(Debug, PartialEq)]
pub struct Login {
    pub user: String,
    pub password: String,
}

/// Parse a StartOk response for `mechanism`: 502 when malformed, 503 for unknown mechanisms.
pub fn parse_response(mechanism: &str, response: &[u8]) -> Result<Login, AmqpError> {
    match mechanism {
        "PLAIN" => {
            // [authzid] NUL authcid NUL passwd (RFC 4616)
            let parts: Vec<&[u8]> = response.split(|b| *b == 0).collect();
            if parts.len() != 3 {
                return Err(AmqpError::syntax_error(
                    "Authentication mechanism PLAIN: response has invalid format",
                ));
            }
            Ok(Login {
                user: String::from_utf8_lossy(parts[1]).into_owned(),
                password: String::from_utf8_lossy(parts[2]).into_owned(),
            })
        }
        "AMQPLAIN" => {
            // A field table without its length prefix.
            let mut buf = Vec::with_capacity(response.len() + 4);
            let len = u32::try_from(response.len())
                .map_err(|_| AmqpError::syntax_error("AMQPLAIN response too long"))?;
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(response);
            let table: FieldTable = match amq_protocol::types::parsing::parse_field_table(&buf[..])
            {
                Ok((&[], t)) => t,
                _ => {
                    return Err(AmqpError::syntax_error(
                        "Authentication mechanism AMQPLAIN: response has invalid format",
                    ))
                }
            };
            let field = |k: &str| match table.inner().get(k) {
                Some(AMQPValue::LongString(s)) => {
                    Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
                }
                Some(AMQPValue::ShortString(s)) => Some(s.to_string()),
                _ => None,
            };
            match (field("LOGIN"), field("PASSWORD")) {
                (Some(user), Some(password)) => Ok(Login { user, password }),
                _ => Err(AmqpError::syntax_error(
                    "Authentication mechanism AMQPLAIN: LOGIN or PASSWORD missing",
                )),
            }
        }
        other => Err(AmqpError::command_invalid(format!(
            "unknown authentication mechanism '{other}'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_amqplain() {
        let l = parse_response("PLAIN", b"\0guest\0guest").expect("plain");
        assert_eq!(l.user, "guest");
        assert_eq!(parse_response("PLAIN", b"guest").unwrap_err().code(), 502);
        assert_eq!(parse_response("FOO", b"").unwrap_err().code(), 503);
        let creds = amq_protocol::auth::Credentials::new("guest".into(), "pw".into());
        let resp = creds.sasl_auth_string(amq_protocol::auth::SASLMechanism::AMQPlain);
        let l = parse_response("AMQPLAIN", resp.as_bytes()).expect("amqplain");
        assert_eq!(
            l,
            Login {
                user: "guest".into(),
                password: "pw".into()
            }
        );
    }
}
