//! One queue link's task (RabbitMQ's queue federation): the upstream queue of the same name
//! (declared as the downstream one is if missing) is consumed, at priority -1 so the
//! upstream's own consumers come first, only while the downstream queue is empty and has a
//! consumer; what arrives is republished into the downstream queue through the default
//! exchange, with an `x-received-from` hop whose `visit-count` grows each time a message
//! comes back to the same queue. Nothing is deleted upstream when the link stops.

use super::link::{code, connection_name, err, forward, text, upstream_target, Ends};
use super::{AckMode, LinkSpec, Status, Upstream};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::watch;

type Res<T> = Result<T, String>;

/// How often the downstream queue is looked at (empty, with a consumer?).
const STATE_CHECK: Duration = Duration::from_millis(50);

/// The link's consumer tag: `consumer-tag`, else "federation-link-" and the upstream's name.
pub fn consumer_tag(upstream_name: &str, u: &Upstream) -> String {
    u.consumer_tag
        .clone()
        .unwrap_or_else(|| format!("federation-link-{upstream_name}"))
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
    let (_, connect_uri) = upstream_target(uri, &spec.vhost);
    let name = connection_name(&spec.upstream_name);
    let Ends { local, dch, up, ch } = Ends::connect(spec, &connect_uri, &name).await?;
    let upstream_q = u.queue.clone().unwrap_or_else(|| spec.name.clone());
    ensure_upstream_queue(spec, &up, &ch, &upstream_q).await?;
    let no_ack = u.ack_mode == AckMode::NoAck;
    if !no_ack {
        ch.basic_qos(u.prefetch, Default::default())
            .await
            .map_err(err)?;
    }
    status.set("running", None);
    let tag = consumer_tag(&spec.upstream_name, u);
    let safe = super::safe_uri(uri);
    let batch = usize::from(u.prefetch / 2).max(1);
    let mut pending = VecDeque::new();
    let mut consumer: Option<lapin::Consumer> = None;
    let mut cancelled = false;
    let mut check = tokio::time::interval(STATE_CHECK);
    let state = spec.queue_state.clone();
    loop {
        tokio::select! {
            next = async { consumer.as_mut()?.next().await }, if consumer.is_some() => {
                let Some(d) = next else {
                    // Cancelled (by this link, or by the upstream): settle and wait to resume.
                    crate::shovel::settle(&ch, &mut pending).await?;
                    consumer = None;
                    if !cancelled {
                        return Err("the upstream cancelled the consumer".into());
                    }
                    continue;
                };
                let d = d.map_err(err)?;
                let props = forwarded(spec, d.properties.clone(), &safe, &d);
                let to = ("", spec.name.as_str());
                forward(&ch, &dch, to, &d, props, u.ack_mode, &mut pending, batch).await?;
            }
            _ = tokio::time::sleep(Duration::from_millis(10)), if !pending.is_empty() => {
                crate::shovel::settle(&ch, &mut pending).await?;
            }
            _ = check.tick() => {
                // Run only while the downstream queue is empty and someone consumes from it.
                let run = state.as_ref().and_then(|s| s()).is_some_and(|(ready, consumed)| ready == 0 && consumed);
                if run && consumer.is_none() {
                    consumer = Some(consume(&ch, &upstream_q, &tag, no_ack).await?);
                    cancelled = false;
                } else if !run && consumer.is_some() && !cancelled {
                    ch.basic_cancel(tag.as_str().into(), Default::default()).await.map_err(err)?;
                    cancelled = true;
                }
            }
            _ = stopped.changed() => {
                crate::shovel::settle(&ch, &mut pending).await.ok();
                let _ = up.close(200, "federation link stopped".into()).await;
                let _ = local.close(200, "federation link stopped".into()).await;
                status.set("stopped", None);
                return Ok(());
            }
        }
    }
}

async fn consume(ch: &Channel, queue: &str, tag: &str, no_ack: bool) -> Res<lapin::Consumer> {
    let mut args = FieldTable::default();
    args.insert("x-priority".into(), AMQPValue::LongInt(-1));
    ch.basic_consume(
        queue.into(),
        tag.into(),
        BasicConsumeOptions {
            no_ack,
            ..Default::default()
        },
        args,
    )
    .await
    .map_err(err)
}

/// The upstream queue must exist: if a passive declare says 404, declare it as the
/// downstream one is.
async fn ensure_upstream_queue(spec: &LinkSpec, up: &Connection, ch: &Channel, q: &str) -> Res<()> {
    let one_off = up.create_channel().await.map_err(err)?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    match one_off
        .queue_declare(q.into(), passive, FieldTable::default())
        .await
    {
        Ok(_) => {
            let _ = one_off.close(200, "".into()).await;
            Ok(())
        }
        Err(e) if code(&e) == Some(404) => {
            let options = QueueDeclareOptions {
                durable: spec.durable,
                auto_delete: spec.auto_delete,
                ..Default::default()
            };
            ch.queue_declare(q.into(), options, spec.arguments.clone())
                .await
                .map(|_| ())
                .map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

fn same_text(t: &FieldTable, key: &str, want: &str) -> bool {
    t.inner()
        .get(key)
        .and_then(crate::args::as_str)
        .is_some_and(|v| v == want)
}

/// The properties republished downstream: an `x-received-from` hop in front (uri, queue,
/// redelivered, visit-count: one more than an earlier hop through the same uri and queue,
/// which it replaces), `x-original-exchange` and `x-original-routing-key` on the first hop,
/// and `CC` renamed `x-original-cc` (the downstream publish must not be routed by it).
fn forwarded(
    spec: &LinkSpec,
    props: BasicProperties,
    uri: &str,
    d: &lapin::message::Delivery,
) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    let previous = match headers.inner().get("x-received-from") {
        Some(AMQPValue::FieldArray(a)) => Some(a.as_slice().to_vec()),
        _ => None,
    };
    if previous.is_none() {
        headers.insert("x-original-exchange".into(), text(d.exchange.as_str()));
        headers.insert(
            "x-original-routing-key".into(),
            text(d.routing_key.as_str()),
        );
    }
    if let Some(cc) = headers.inner().get("CC").cloned() {
        headers.insert("x-original-cc".into(), cc);
        let mut rest = FieldTable::default();
        for (k, v) in headers.inner() {
            if k.as_str() != "CC" {
                rest.insert(k.clone(), v.clone());
            }
        }
        headers = rest;
    }
    let mut visits = 0;
    let mut others = Vec::new();
    for hop in previous.unwrap_or_default() {
        match &hop {
            AMQPValue::FieldTable(t)
                if same_text(t, "uri", uri) && same_text(t, "queue", &spec.name) =>
            {
                visits = t
                    .inner()
                    .get("visit-count")
                    .and_then(crate::args::as_i64)
                    .unwrap_or(0);
            }
            _ => others.push(hop),
        }
    }
    let mut hop = FieldTable::default();
    hop.insert("uri".into(), text(uri));
    hop.insert("queue".into(), text(&spec.name));
    hop.insert("redelivered".into(), AMQPValue::Boolean(d.redelivered));
    hop.insert(
        "visit-count".into(),
        AMQPValue::LongLongInt(visits.saturating_add(1)),
    );
    let mut list = vec![AMQPValue::FieldTable(hop)];
    list.extend(others);
    headers.insert(
        "x-received-from".into(),
        AMQPValue::FieldArray(FieldArray::from(list)),
    );
    props.with_headers(headers)
}
