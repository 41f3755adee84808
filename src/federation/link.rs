//! One exchange link's session: connect to this broker and to the upstream, declare the
//! upstream queue and internal exchange (RabbitMQ's names, flags and arguments), mirror the
//! downstream exchange's bindings onto the upstream exchange, then republish what arrives.
//! Told to stop, it deletes what it declared upstream (unless `resource-cleanup-mode` is
//! `never`); the caller (`federation::run`) starts it again after a failure. Also the pieces
//! both link kinds share (`Ends`, `forward`).

use super::{AckMode, LinkSpec, Status};
use crate::exchange::federation_upstream::should_forward;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use tokio::sync::watch;

type Res<T> = Result<T, String>;

pub(super) fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// How often the downstream exchange's bindings are compared with the mirrored ones.
const BINDING_CHECK: Duration = Duration::from_millis(200);

/// The name of the link's connection to this broker (RabbitMQ's).
pub fn connection_name(upstream: &str) -> String {
    format!("Federation link (upstream: {upstream})")
}

/// The upstream vhost (the URI's path, else the downstream's) and the URI to connect with.
pub(super) fn upstream_target(uri: &str, downstream_vhost: &str) -> (String, String) {
    let (base, query) = match uri.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (uri, None),
    };
    let after_scheme = base.split_once("://").map_or(base, |(_, r)| r);
    match after_scheme.split_once('/') {
        Some((_, path)) => (crate::shovel::connect::decode(path), uri.to_string()),
        None => {
            let with = format!(
                "{base}/{}",
                crate::shovel::connect::encode(downstream_vhost)
            );
            let with = match query {
                Some(q) => format!("{with}?{q}"),
                None => with,
            };
            (downstream_vhost.to_string(), with)
        }
    }
}

/// RabbitMQ's `upstream_queue_name`: "federation: X -> cluster[:vhost]:[exchange]".
fn queue_name(spec: &LinkSpec, upstream_x: &str, upstream_vhost: &str) -> String {
    let down = if spec.vhost == upstream_vhost {
        if spec.name == upstream_x {
            String::new()
        } else {
            format!(":{}", spec.name)
        }
    } else {
        format!(":{}:{}", spec.vhost, spec.name)
    };
    format!("federation: {upstream_x} -> {}{down}", spec.cluster_name)
}

/// The upstream's `cluster_name` server property (RabbitMQ's UName, recorded in each hop so
/// that a ring of links stops a message where it has been), read from the connection.start of
/// a handshake of its own, since lapin does not expose server properties. None over TLS, or
/// when the upstream does not say within 5 s or 64 KiB.
pub(super) async fn upstream_cluster_name(uri: &str) -> Option<String> {
    use amq_protocol::frame::AMQPFrame;
    use amq_protocol::protocol::{connection, AMQPClass};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if !uri.starts_with("amqp://") {
        return None;
    }
    let u: amq_protocol::uri::AMQPUri = uri.parse().ok()?;
    let peek = async {
        let addr = (u.authority.host.as_str(), u.authority.port);
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"AMQP\x00\x00\x09\x01").await.ok()?;
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        while buf.len() < 64 * 1024 {
            let n = s.read(&mut tmp).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
            if let Ok((_, frame)) = amq_protocol::frame::parse_frame(&buf[..]) {
                let AMQPFrame::Method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::Start(start)),
                ) = frame
                else {
                    return None;
                };
                return start
                    .server_properties
                    .inner()
                    .get("cluster_name")
                    .and_then(crate::args::as_str);
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(5), peek)
        .await
        .ok()?
}

/// A link's two connections: to this broker (`dch`, in confirm mode for on-confirm) and to
/// the upstream (`ch`).
pub(super) struct Ends {
    pub local: Connection,
    pub dch: Channel,
    pub up: Connection,
    pub ch: Channel,
}

impl Ends {
    pub async fn connect(spec: &LinkSpec, upstream_uri: &str, name: &str) -> Res<Ends> {
        let local = crate::shovel::connect::connect(&spec.local_uri, props(name))
            .await
            .map_err(|e| format!("downstream: {e}"))?;
        let dch = local.create_channel().await.map_err(err)?;
        if spec.upstream.ack_mode == AckMode::OnConfirm {
            dch.confirm_select(Default::default()).await.map_err(err)?;
        }
        let up = crate::shovel::connect::connect(upstream_uri, props(name))
            .await
            .map_err(|e| format!("upstream: {e}"))?;
        let ch = up.create_channel().await.map_err(err)?;
        Ok(Ends { local, dch, up, ch })
    }
}

/// Publish delivery `d` to (exchange, routing key) `to` here with `props`, and settle it
/// upstream as the ack mode says (on-confirm: in `pending`, settled `batch` at a time).
#[allow(clippy::too_many_arguments)]
pub(super) async fn forward(
    ch: &Channel,
    dch: &Channel,
    to: (&str, &str),
    d: &lapin::message::Delivery,
    props: BasicProperties,
    mode: AckMode,
    pending: &mut VecDeque<(u64, lapin::PublisherConfirm)>,
    batch: usize,
) -> Res<()> {
    let confirm = dch
        .basic_publish(
            to.0.into(),
            to.1.into(),
            BasicPublishOptions::default(),
            &d.data,
            props,
        )
        .await
        .map_err(err)?;
    match mode {
        AckMode::OnConfirm => pending.push_back((d.delivery_tag, confirm)),
        AckMode::OnPublish => ch
            .basic_ack(d.delivery_tag, BasicAckOptions::default())
            .await
            .map_err(err)?,
        AckMode::NoAck => {}
    }
    if pending.len() >= batch {
        crate::shovel::settle(ch, pending).await?;
    }
    Ok(())
}

pub(super) fn props(name: &str) -> ConnectionProperties {
    ConnectionProperties::default().with_connection_name(name.into())
}

pub(super) fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

pub(super) fn code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(err) => Some(err.get_id()),
        _ => None,
    }
}

pub(super) async fn session(
    spec: &LinkSpec,
    status: &Status,
    attempt: usize,
    stopped: &mut watch::Receiver<bool>,
) -> Res<()> {
    let u = &spec.upstream;
    let uri = &crate::shovel::connect::resolve(&u.uris[attempt % u.uris.len()], &spec.local_uri);
    *status.uri.lock().unwrap_or_else(|p| p.into_inner()) = super::safe_uri(uri);
    let (upstream_vhost, connect_uri) = upstream_target(uri, &spec.vhost);
    let name = connection_name(&spec.upstream_name);
    let Ends { local, dch, up, ch } = Ends::connect(spec, &connect_uri, &name).await?;
    let upstream_name = upstream_cluster_name(&connect_uri).await;
    let upstream_x = u.exchange.clone().unwrap_or_else(|| spec.name.clone());
    let queue = queue_name(spec, &upstream_x, &upstream_vhost);
    // The internal exchange's name alternates between " A" and " B" at each start (RabbitMQ's
    // scheme): the new one is bound before the old one, still receiving, is deleted, so a
    // restart loses nothing published upstream meanwhile.
    let suffix = if exchange_exists(&up, &format!("{queue} B")).await? {
        'A'
    } else {
        'B'
    };
    let internal = format!("{queue} {suffix}");
    let old_internal = format!("{queue} {}", if suffix == 'A' { 'B' } else { 'A' });

    let mut qargs = FieldTable::default();
    if let Some(n) = u.expires {
        qargs.insert("x-expires".into(), AMQPValue::LongLongInt(n));
    }
    if let Some(n) = u.message_ttl {
        qargs.insert("x-message-ttl".into(), AMQPValue::LongLongInt(n));
    }
    qargs.insert("x-internal-purpose".into(), text("federation"));
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(queue.as_str().into(), durable, qargs)
        .await
        .map_err(err)?;
    if u.ack_mode != AckMode::NoAck {
        ch.basic_qos(u.prefetch, Default::default())
            .await
            .map_err(err)?;
    }
    ensure_upstream_exchange(spec, &up, &ch, &upstream_x).await?;
    ensure_internal_exchange(spec, &up, &connect_uri, &name, &internal).await?;
    ch.queue_bind(
        queue.as_str().into(),
        internal.as_str().into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .map_err(err)?;
    let mut mirrored = BTreeMap::new();
    let here = format!("{}:{} {suffix}", spec.vhost, spec.name);
    let origin = Origin {
        here: &here,
        upstream_name: upstream_name.as_deref(),
        upstream_vhost: &upstream_vhost,
    };
    sync_bindings(spec, &ch, &upstream_x, &internal, &origin, &mut mirrored).await?;
    if let Ok(one_off) = up.create_channel().await {
        let _ = one_off
            .exchange_delete(old_internal.as_str().into(), Default::default())
            .await;
    }
    let no_ack = u.ack_mode == AckMode::NoAck;
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
    status.set("running", None);
    let safe = super::safe_uri(uri);
    let batch = usize::from(u.prefetch / 2).max(1);
    let mut pending = VecDeque::new();
    let mut check = tokio::time::interval(BINDING_CHECK);
    loop {
        tokio::select! {
            next = consumer.next() => {
                let d = next
                    .ok_or_else(|| "the upstream stopped delivering".to_string())?
                    .map_err(err)?;
                let headers = d.properties.headers().clone();
                if !should_forward(headers.as_ref(), u.max_hops, &spec.cluster_name, &spec.vhost) {
                    if !no_ack {
                        ch.basic_ack(d.delivery_tag, BasicAckOptions::default()).await.map_err(err)?;
                    }
                    continue;
                }
                let props = forwarded(spec, d.properties.clone(), &safe, &origin, d.redelivered);
                let to = (spec.name.as_str(), d.routing_key.as_str());
                forward(&ch, &dch, to, &d, props, u.ack_mode, &mut pending, batch).await?;
            }
            _ = tokio::time::sleep(Duration::from_millis(10)), if !pending.is_empty() => {
                crate::shovel::settle(&ch, &mut pending).await?;
            }
            _ = check.tick() => {
                sync_bindings(spec, &ch, &upstream_x, &internal, &origin, &mut mirrored).await?;
            }
            _ = stopped.changed() => {
                crate::shovel::settle(&ch, &mut pending).await.ok();
                if !u.keep_resources {
                    if let Ok(c) = up.create_channel().await {
                        let _ = c.queue_delete(queue.as_str().into(), Default::default()).await;
                        let _ = c.exchange_delete(internal.as_str().into(), Default::default()).await;
                    }
                }
                let _ = up.close(200, "federation link stopped".into()).await;
                let _ = local.close(200, "federation link stopped".into()).await;
                status.set("stopped", None);
                return Ok(());
            }
        }
    }
}

/// Whether exchange `name` exists upstream (a passive declare on a channel of its own, which
/// a 404 closes).
async fn exchange_exists(up: &Connection, name: &str) -> Res<bool> {
    let c = up.create_channel().await.map_err(err)?;
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    match c
        .exchange_declare(
            name.into(),
            lapin::ExchangeKind::Fanout,
            passive,
            FieldTable::default(),
        )
        .await
    {
        Ok(()) => {
            let _ = c.close(200, "".into()).await;
            Ok(true)
        }
        Err(e) if code(&e) == Some(404) => Ok(false),
        Err(e) => Err(err(e)),
    }
}

/// The upstream exchange must exist: if a passive declare says 404, declare it as the
/// downstream one is.
async fn ensure_upstream_exchange(
    spec: &LinkSpec,
    up: &Connection,
    ch: &Channel,
    upstream_x: &str,
) -> Res<()> {
    let one_off = up.create_channel().await.map_err(err)?;
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let kind = lapin::ExchangeKind::Custom(spec.exchange_type.clone());
    match one_off
        .exchange_declare(
            upstream_x.into(),
            kind.clone(),
            passive,
            FieldTable::default(),
        )
        .await
    {
        Ok(()) => {
            let _ = one_off.close(200, "".into()).await;
            Ok(())
        }
        Err(e) if code(&e) == Some(404) => {
            let options = ExchangeDeclareOptions {
                durable: spec.durable,
                auto_delete: spec.auto_delete,
                internal: spec.internal,
                ..Default::default()
            };
            ch.exchange_declare(upstream_x.into(), kind, options, spec.arguments.clone())
                .await
                .map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

/// Declare the internal `x-federation-upstream` exchange (a fanout where the upstream has no
/// such type: 503 from a broker without the plugin), on a connection of its own since 503
/// closes it.
async fn ensure_internal_exchange(
    spec: &LinkSpec,
    up: &Connection,
    uri: &str,
    name: &str,
    internal: &str,
) -> Res<()> {
    if let Ok(c) = up.create_channel().await {
        let _ = c.exchange_delete(internal.into(), Default::default()).await;
    }
    let options = ExchangeDeclareOptions {
        durable: true,
        auto_delete: true,
        internal: true,
        ..Default::default()
    };
    let mut args = FieldTable::default();
    args.insert(
        "x-max-hops".into(),
        AMQPValue::LongLongInt(spec.upstream.max_hops),
    );
    args.insert("x-downstream-name".into(), text(&spec.cluster_name));
    args.insert("x-downstream-vhost".into(), text(&spec.vhost));
    args.insert("x-internal-purpose".into(), text("federation"));
    let one_off = crate::shovel::connect::connect(uri, props(name)).await?;
    let c = one_off.create_channel().await.map_err(err)?;
    let kind = lapin::ExchangeKind::Custom(crate::exchange::federation_upstream::TYPE.into());
    let declared = c
        .exchange_declare(internal.into(), kind, options, args)
        .await;
    let _ = one_off.close(200, "".into()).await;
    match declared {
        Ok(()) => Ok(()),
        Err(e) if code(&e) == Some(503) => {
            let mut args = FieldTable::default();
            args.insert("x-internal-purpose".into(), text("federation"));
            let c = up.create_channel().await.map_err(err)?;
            c.exchange_declare(internal.into(), lapin::ExchangeKind::Fanout, options, args)
                .await
                .map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

/// Where a link's hops come from: this link's exchange tag (`x-bound-from`), the upstream's
/// cluster name when known, and the upstream vhost.
struct Origin<'a> {
    here: &'a str,
    upstream_name: Option<&'a str>,
    upstream_vhost: &'a str,
}

/// A binding key and arguments, as a map key (FieldTable has no order of its own).
fn binding_key(key: &str, args: &FieldTable) -> String {
    format!("{key}\0{args:?}")
}

/// Bind the internal exchange to the upstream exchange for each distinct (key, arguments) of
/// the downstream exchange, and unbind what went; `mirrored` is what is bound now.
async fn sync_bindings(
    spec: &LinkSpec,
    ch: &Channel,
    upstream_x: &str,
    internal: &str,
    origin: &Origin<'_>,
    mirrored: &mut BTreeMap<String, (String, FieldTable)>,
) -> Res<()> {
    let Some(now) = (spec.bindings)() else {
        return Ok(()); // the exchange went; the broker stops this link
    };
    let mut want = BTreeMap::new();
    for (key, args) in now {
        if let Some(upstream_args) = bound_from(spec, &args, origin) {
            want.insert(binding_key(&key, &args), (key, upstream_args));
        }
    }
    for (k, (key, args)) in &want {
        if !mirrored.contains_key(k) {
            ch.exchange_bind(
                internal.into(),
                upstream_x.into(),
                key.as_str().into(),
                Default::default(),
                args.clone(),
            )
            .await
            .map_err(err)?;
        }
    }
    for (k, (key, args)) in mirrored.iter() {
        if !want.contains_key(k) {
            ch.exchange_unbind(
                internal.into(),
                upstream_x.into(),
                key.as_str().into(),
                Default::default(),
                args.clone(),
            )
            .await
            .map_err(err)?;
        }
    }
    *mirrored = want;
    Ok(())
}

/// The arguments of a mirrored binding: the downstream's, with an `x-bound-from` hop in front
/// (RabbitMQ's hops: max-hops for a local binding, one fewer than the last link's for a
/// binding that came from further along, none for one that came from the upstream itself);
/// None when no hops are left.
fn bound_from(spec: &LinkSpec, args: &FieldTable, origin: &Origin<'_>) -> Option<FieldTable> {
    let max = spec.upstream.max_hops;
    let previous = match args.inner().get("x-bound-from") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
        _ => Vec::new(),
    };
    let from_upstream = |v: &AMQPValue| match (v, origin.upstream_name) {
        (AMQPValue::FieldTable(t), Some(name)) => {
            let get = |k: &str| t.inner().get(k).and_then(crate::args::as_str);
            get("cluster-name").as_deref() == Some(name)
                && get("vhost").as_deref() == Some(origin.upstream_vhost)
        }
        _ => false,
    };
    if previous.iter().any(from_upstream) {
        return None;
    }
    let hops = match previous.first() {
        None => max,
        Some(AMQPValue::FieldTable(t)) => {
            let prev = t
                .inner()
                .get("hops")
                .and_then(crate::args::as_i64)
                .unwrap_or(0);
            prev.saturating_sub(1).min(max)
        }
        Some(_) => max,
    };
    if hops <= 0 {
        return None;
    }
    let mut hop = FieldTable::default();
    hop.insert("cluster-name".into(), text(&spec.cluster_name));
    hop.insert("vhost".into(), text(&spec.vhost));
    hop.insert("exchange".into(), text(origin.here));
    hop.insert(
        "hops".into(),
        AMQPValue::ShortInt(i16::try_from(hops).unwrap_or(i16::MAX)),
    );
    let mut list = vec![AMQPValue::FieldTable(hop)];
    list.extend(previous);
    let mut out = args.clone();
    out.insert(
        "x-bound-from".into(),
        AMQPValue::FieldArray(FieldArray::from(list)),
    );
    Some(out)
}

/// A message's properties as republished downstream: an `x-received-from` hop in front
/// (uri without credentials, the downstream exchange, redelivered, the upstream vhost), and
/// no user_id unless `trust-user-id`.
fn forwarded(
    spec: &LinkSpec,
    props: BasicProperties,
    uri: &str,
    origin: &Origin<'_>,
    redelivered: bool,
) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    let mut previous = Vec::new();
    match headers.inner().get("x-received-from").cloned() {
        Some(AMQPValue::FieldArray(a)) => previous = a.as_slice().to_vec(),
        Some(other) => {
            headers.insert("x-invalid-headers".into(), {
                let mut t = FieldTable::default();
                t.insert("x-received-from".into(), other);
                AMQPValue::FieldTable(t)
            });
        }
        None => {}
    }
    let mut hop = FieldTable::default();
    hop.insert("uri".into(), text(uri));
    hop.insert("exchange".into(), text(&spec.name));
    hop.insert("redelivered".into(), AMQPValue::Boolean(redelivered));
    if let Some(name) = origin.upstream_name {
        hop.insert("cluster-name".into(), text(name));
    }
    hop.insert("vhost".into(), text(origin.upstream_vhost));
    let mut list = vec![AMQPValue::FieldTable(hop)];
    list.extend(previous);
    headers.insert(
        "x-received-from".into(),
        AMQPValue::FieldArray(FieldArray::from(list)),
    );
    let props = props.with_headers(headers);
    if spec.upstream.trust_user_id || props.user_id().is_none() {
        props
    } else {
        without_user_id(&props)
    }
}

/// The same properties with no user_id (the type has no way to unset one field).
fn without_user_id(p: &BasicProperties) -> BasicProperties {
    let mut out = BasicProperties::default();
    macro_rules! copy {
        ($($get:ident => $with:ident),*) => {
            $(if let Some(v) = p.$get().clone() { out = out.$with(v); })*
        };
    }
    copy!(content_type => with_content_type, content_encoding => with_content_encoding,
        headers => with_headers, delivery_mode => with_delivery_mode, priority => with_priority,
        correlation_id => with_correlation_id, reply_to => with_reply_to,
        expiration => with_expiration, message_id => with_message_id,
        timestamp => with_timestamp, kind => with_type, app_id => with_app_id,
        cluster_id => with_cluster_id);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_vhost_comes_from_the_uri_or_the_downstream() {
        assert_eq!(
            upstream_target("amqp://u:p@h:1/v%2F1?heartbeat=5", "/"),
            (
                "v/1".to_string(),
                "amqp://u:p@h:1/v%2F1?heartbeat=5".to_string()
            )
        );
        assert_eq!(
            upstream_target("amqp://h:1?heartbeat=5", "/"),
            ("/".to_string(), "amqp://h:1/%2F?heartbeat=5".to_string())
        );
    }
}
