//! Connection handshake: protocol header, Start/StartOk (SASL), Tune/TuneOk, Open/OpenOk.

use super::{Broker, ClientCaps};
use crate::codec::{self, Frame, FRAME_MIN_SIZE};
use crate::error::AmqpError;
use crate::vhost::VHost;
use amq_protocol::protocol::{connection as conn, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

pub struct Negotiated {
    pub user: String,
    pub vhost: Arc<VHost>,
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
    pub caps: ClientCaps,
    /// As the client sent them in start-ok, for the management API.
    pub client_properties: amq_protocol::types::FieldTable,
}

/// How a failed handshake ends.
pub enum Failed {
    /// Drop the socket without a word (bad protocol header already answered, peer gone, or a
    /// failed login from a client that did not ask for authentication_failure_close).
    Drop,
    /// Send connection.close with this error, then wait briefly for close-ok.
    Close(AmqpError),
}

impl From<AmqpError> for Failed {
    fn from(e: AmqpError) -> Self {
        Failed::Close(e)
    }
}

/// What connection.start tells the client. `version` is the RabbitMQ version Warren matches
/// (clients such as kombu pick their behaviour by it); Warren's own is `warren_version`.
/// `cluster_name` is the broker's (RabbitMQ's federation links record it in each hop).
pub fn server_properties(rabbitmq_version: &str, cluster_name: &str) -> FieldTable {
    let mut caps = FieldTable::default();
    for c in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        caps.insert(c.into(), AMQPValue::Boolean(true));
    }
    let s = |v: &str| AMQPValue::LongString(v.into());
    let mut t = FieldTable::default();
    t.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    t.insert("cluster_name".into(), s(cluster_name));
    t.insert("copyright".into(), s("Copyright (c) the Warren authors"));
    t.insert(
        "information".into(),
        s("Licensed under the MIT or Apache-2.0 license"),
    );
    t.insert(
        "platform".into(),
        s(&format!("Rust ({})", std::env::consts::OS)),
    );
    t.insert("product".into(), s("Warren"));
    t.insert("version".into(), s(rabbitmq_version));
    t.insert("warren_version".into(), s(env!("CARGO_PKG_VERSION")));
    t
}

fn client_caps(props: &FieldTable) -> ClientCaps {
    let caps = match props.inner().get("capabilities") {
        Some(AMQPValue::FieldTable(t)) => t.clone(),
        _ => FieldTable::default(),
    };
    let on = |k: &str| matches!(caps.inner().get(k), Some(AMQPValue::Boolean(true)));
    ClientCaps {
        consumer_cancel_notify: on("consumer_cancel_notify"),
        connection_blocked: on("connection.blocked"),
        authentication_failure_close: on("authentication_failure_close"),
    }
}

async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    frame_max: u32,
) -> Result<Frame, Failed> {
    loop {
        if let Some(f) = codec::decode(rbuf, frame_max)? {
            if matches!(f, Frame::Heartbeat(0)) {
                continue;
            }
            return Ok(f);
        }
        match stream.read_buf(rbuf).await {
            Ok(0) | Err(_) => return Err(Failed::Drop),
            Ok(_) => {}
        }
    }
}

/// The next frame must be this connection-class method on channel 0.
async fn expect<T, S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    frame_max: u32,
    name: &str,
    pick: impl Fn(conn::AMQPMethod) -> Option<T>,
) -> Result<T, Failed> {
    let frame = read_frame(stream, rbuf, frame_max).await?;
    if let Frame::Method(0, m) = frame {
        if let AMQPClass::Connection(cm) = *m {
            if let conn::AMQPMethod::Close(_) = cm {
                // The client gave up mid-handshake; be polite and answer.
                let mut out = Vec::new();
                codec::write_method(
                    &mut out,
                    0,
                    AMQPClass::Connection(conn::AMQPMethod::CloseOk(conn::CloseOk {})),
                );
                let _ = stream.write_all(&out).await;
                return Err(Failed::Drop);
            }
            if let Some(v) = pick(cm) {
                return Ok(v);
            }
        }
    }
    Err(AmqpError::channel_error(format!("expected '{name}'")).into())
}

async fn send<S: AsyncWrite + Unpin>(
    stream: &mut S,
    method: conn::AMQPMethod,
) -> Result<(), Failed> {
    let mut out = Vec::new();
    codec::write_method(&mut out, 0, AMQPClass::Connection(method));
    stream.write_all(&out).await.map_err(|_| Failed::Drop)
}

/// `external`: the common name of a verified TLS client certificate, which offers SASL
/// EXTERNAL (log in as that user, no password).
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    broker: &Broker,
    peer: SocketAddr,
    external: Option<&str>,
) -> Result<Negotiated, Failed> {
    while rbuf.len() < 8 {
        match stream.read_buf(rbuf).await {
            Ok(0) | Err(_) => return Err(Failed::Drop),
            Ok(_) => {}
        }
    }
    if &rbuf[..8] != PROTOCOL_HEADER {
        // spec 4.2.2: answer with the protocol header we do support, then close.
        let _ = stream.write_all(PROTOCOL_HEADER).await;
        return Err(Failed::Drop);
    }
    let _ = rbuf.split_to(8);
    send(
        stream,
        conn::AMQPMethod::Start(conn::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(
                &broker.config.rabbitmq_version,
                &broker.cluster_name(),
            ),
            mechanisms: if external.is_some() {
                "PLAIN AMQPLAIN EXTERNAL".into()
            } else {
                "PLAIN AMQPLAIN".into()
            },
            locales: "en_US".into(),
        }),
    )
    .await?;
    let start_ok = expect(
        stream,
        rbuf,
        FRAME_MIN_SIZE,
        "connection.start_ok",
        |m| match m {
            conn::AMQPMethod::StartOk(s) => Some(s),
            _ => None,
        },
    )
    .await?;
    let caps = client_caps(&start_ok.client_properties);
    let mechanism = start_ok.mechanism.to_string();
    let user = match (mechanism.as_str(), external) {
        ("EXTERNAL", Some(cn)) => match broker.users.authenticate_external(cn, peer.ip()) {
            Ok(user) => user.name.clone(),
            Err(why) => return Err(refuse_login(cn, peer, why, &mechanism, caps)),
        },
        _ => {
            let login = crate::auth::parse_response(&mechanism, start_ok.response.as_bytes())
                .map_err(|e| e.on(10, 11))?;
            match broker.users.authenticate(&login, peer.ip()) {
                Ok(user) => user.name.clone(),
                Err(why) => return Err(refuse_login(&login.user, peer, why, &mechanism, caps)),
            }
        }
    };
    let cfg = &broker.config;
    send(
        stream,
        conn::AMQPMethod::Tune(conn::Tune {
            channel_max: cfg.channel_max,
            frame_max: cfg.frame_max,
            heartbeat: cfg.heartbeat,
        }),
    )
    .await?;
    let tune_ok = expect(
        stream,
        rbuf,
        FRAME_MIN_SIZE,
        "connection.tune_ok",
        |m| match m {
            conn::AMQPMethod::TuneOk(t) => Some(t),
            _ => None,
        },
    )
    .await?;
    check_tune(
        tune_ok.channel_max.into(),
        cfg.channel_max.into(),
        "channel_max",
        1,
    )?;
    check_tune(
        tune_ok.frame_max,
        cfg.frame_max,
        "frame_max",
        FRAME_MIN_SIZE,
    )?;
    let open = expect(
        stream,
        rbuf,
        tune_ok.frame_max,
        "connection.open",
        |m| match m {
            conn::AMQPMethod::Open(o) => Some(o),
            _ => None,
        },
    )
    .await?;
    let vhost_name = open.virtual_host.to_string();
    let vhost = admit(broker, &vhost_name, &user).map_err(|e| e.on(10, 40))?;
    if let Some(max) = broker.config.max_connections {
        if broker.connection_count() >= max {
            // rabbit_reader's node connection limit (connection_max).
            return Err(AmqpError::not_allowed(format!(
                "connection refused: node connection limit ({max}) is reached"
            ))
            .on(10, 40)
            .into());
        }
    }
    send(stream, conn::AMQPMethod::OpenOk(conn::OpenOk {})).await?;
    Ok(Negotiated {
        user,
        vhost,
        channel_max: tune_ok.channel_max,
        frame_max: tune_ok.frame_max,
        heartbeat: tune_ok.heartbeat,
        caps,
        client_properties: start_ok.client_properties,
    })
}

/// A failed login: logged with peer and user (never the password); the client hears 403 only
/// if it asked for authentication_failure_close, as RabbitMQ does.
fn refuse_login(
    user: &str,
    peer: SocketAddr,
    why: crate::auth::Refused,
    mechanism: &str,
    caps: ClientCaps,
) -> Failed {
    tracing::warn!(%user, %peer, reason = ?why, mechanism, "login refused");
    if !caps.authentication_failure_close {
        return Failed::Drop;
    }
    AmqpError::new(
        amq_protocol::protocol::AMQPSoftError::ACCESSREFUSED,
        format!(
            "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
        ),
    )
    .into()
}

/// connection.open: the vhost exists, the user has permissions there, and neither the vhost's
/// nor the user's connection limit is reached (rabbit_reader / rabbit_access_control).
fn admit(broker: &Broker, vhost_name: &str, user: &str) -> Result<Arc<VHost>, AmqpError> {
    let Some(vhost) = broker.vhost(vhost_name) else {
        return Err(AmqpError::not_allowed(format!(
            "vhost {vhost_name} not found"
        )));
    };
    if broker.users.permission(vhost_name, user).is_none() {
        return Err(AmqpError::not_allowed(format!(
            "access to vhost '{vhost_name}' refused for user '{user}'"
        )));
    }
    if let Some(max) = vhost.meta().limit("max-connections") {
        if broker
            .connections()
            .iter()
            .filter(|c| c.vhost == vhost_name)
            .count() as u64
            >= max
        {
            return Err(AmqpError::not_allowed(format!(
                "access to vhost '{vhost_name}' refused for user '{user}': connection limit ({max}) is reached"
            )));
        }
    }
    let limit = broker
        .users
        .user(user)
        .and_then(|u| u.limit("max-connections"));
    if let Some(max) = limit {
        if broker
            .connections()
            .iter()
            .filter(|c| c.user == user)
            .count() as u64
            >= max
        {
            return Err(AmqpError::not_allowed(format!(
                "connection refused for user '{user}': user connection limit ({max}) is reached"
            )));
        }
    }
    Ok(vhost)
}

/// rabbit_reader's tune-ok checks: below the minimum, or 0/above the server's limit, is 530.
fn check_tune(client: u32, server: u32, name: &str, min: u32) -> Result<(), AmqpError> {
    if client < min && client != 0 {
        return Err(AmqpError::not_allowed(format!(
            "negotiated {name} = {client} is lower than the minimum allowed value ({min})"
        ))
        .on(10, 31));
    }
    if server != 0 && (client == 0 || client > server) {
        let shown = if client == 0 {
            "0 (no limit)".to_string()
        } else {
            client.to_string()
        };
        return Err(AmqpError::not_allowed(format!(
            "negotiated {name} = {shown} is higher than the maximum allowed value ({server})"
        ))
        .on(10, 31));
    }
    Ok(())
}
