//! One shovel's task: connect to both ends, consume from the source with a prefetch, publish
//! each message to the destination, and acknowledge the source as the ack mode says; on any
//! failure wait `reconnect-delay` and start again (the source redelivers what was not acked).
//! With `on-confirm`, confirms are awaited in batches (half the prefetch, or when the source
//! goes quiet for 10 ms) and the source is acked up to the last confirmed message.

use super::{AckMode, Definition, DeleteAfter, Status};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, ConnectionProperties};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

type Res<T> = Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

pub(super) async fn run(
    def: Definition,
    local: String,
    status: Arc<Status>,
    key: (String, String),
    done: super::OnDone,
) {
    // src-delete-after queue-length: the length when the shovel first started.
    let mut target: Option<u64> = match def.src_delete_after {
        DeleteAfter::Count(n) => Some(n),
        _ => None,
    };
    let mut attempt = 0usize;
    loop {
        match session(&def, &local, &status, &key, attempt, &mut target).await {
            Ok(()) => {
                status.set("terminated", Some("src-delete-after reached".into()));
                done(&key.0, &key.1);
                return;
            }
            Err(why) => {
                tracing::warn!(vhost = %key.0, shovel = %key.1, error = %why, "shovel failed; reconnecting");
                status.set("starting", Some(why));
                tokio::time::sleep(Duration::from_millis(def.reconnect_delay_ms.max(100))).await;
                attempt += 1;
            }
        }
    }
}

/// The URI to use this attempt (see `connect::resolve`).
fn pick(uris: &[String], attempt: usize, local: &str) -> String {
    super::connect::resolve(&uris[attempt % uris.len()], local)
}

async fn session(
    def: &Definition,
    local: &str,
    status: &Status,
    key: &(String, String),
    attempt: usize,
    target: &mut Option<u64>,
) -> Res<()> {
    let props = ConnectionProperties::default;
    let src_uri = pick(&def.src_uris, attempt, local);
    let dest_uri = pick(&def.dest_uris, attempt, local);
    let src = super::connect::connect(&src_uri, props()).await?;
    let dst = super::connect::connect(&dest_uri, props()).await?;
    let sch = src.create_channel().await.map_err(err)?;
    let dch = dst.create_channel().await.map_err(err)?;
    if def.ack_mode == AckMode::OnConfirm {
        dch.confirm_select(Default::default()).await.map_err(err)?;
    }
    if let (Some(q), false) = (&def.dest_queue, def.dest_predeclared) {
        dch.queue_declare(q.as_str().into(), durable(), table(&def.dest_queue_args))
            .await
            .map_err(err)?;
    }
    let no_ack = def.ack_mode == AckMode::NoAck;
    if !no_ack {
        sch.basic_qos(def.src_prefetch, Default::default())
            .await
            .map_err(err)?;
    }
    let queue = source_queue(def, &sch, target).await?;
    let sent = status.transferred.load(Ordering::Relaxed);
    let mut remaining = target.map(|t| t.saturating_sub(sent));
    if remaining == Some(0) {
        return Ok(());
    }
    let mut consumer = sch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack,
                ..Default::default()
            },
            table(&def.src_consumer_args),
        )
        .await
        .map_err(err)?;
    status.set("running", None);
    let batch = usize::from(def.src_prefetch / 2).max(1);
    let mut pending = VecDeque::new();
    loop {
        let next = if pending.is_empty() {
            consumer.next().await
        } else {
            match tokio::time::timeout(Duration::from_millis(10), consumer.next()).await {
                Ok(n) => n,
                Err(_) => {
                    settle(&sch, &mut pending).await?;
                    continue;
                }
            }
        };
        let d = next
            .ok_or_else(|| "the source stopped delivering".to_string())?
            .map_err(err)?;
        let (exchange, routing_key) = destination(def, &d.routing_key);
        let properties = properties(def, d.properties.clone(), key, &src_uri, &dest_uri);
        let confirm = dch
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                &d.data,
                properties,
            )
            .await
            .map_err(err)?;
        match def.ack_mode {
            AckMode::OnConfirm => pending.push_back((d.delivery_tag, confirm)),
            AckMode::OnPublish => sch
                .basic_ack(d.delivery_tag, BasicAckOptions::default())
                .await
                .map_err(err)?,
            AckMode::NoAck => {}
        }
        status.transferred.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = remaining.as_mut() {
            *r -= 1;
            if *r == 0 {
                settle(&sch, &mut pending).await?;
                let _ = src.close(200, "shovel finished".into()).await;
                let _ = dst.close(200, "shovel finished".into()).await;
                return Ok(());
            }
        }
        if pending.len() >= batch {
            settle(&sch, &mut pending).await?;
        }
    }
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// The queue to consume from: src-queue (declared unless predeclared), or a private queue
/// bound to src-exchange. Sets the delete-after target from the queue's length once.
async fn source_queue(def: &Definition, ch: &Channel, target: &mut Option<u64>) -> Res<String> {
    if let Some(q) = &def.src_queue {
        let options = if def.src_predeclared {
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            }
        } else {
            durable()
        };
        let declared = ch
            .queue_declare(q.as_str().into(), options, table(&def.src_queue_args))
            .await
            .map_err(err)?;
        if def.src_delete_after == DeleteAfter::QueueLength && target.is_none() {
            *target = Some(u64::from(declared.message_count()));
        }
        return Ok(q.clone());
    }
    let x = def.src_exchange.clone().unwrap_or_default();
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
    let name = q.name().to_string();
    ch.queue_bind(
        name.as_str().into(),
        x.as_str().into(),
        def.src_exchange_key.as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(err)?;
    Ok(name)
}

/// Where a message goes: dest-exchange (with dest-exchange-key, or the message's key), or
/// dest-queue through the default exchange, or the message's own key on the default exchange.
fn destination(def: &Definition, routing_key: &ShortString) -> (String, String) {
    match (&def.dest_exchange, &def.dest_queue) {
        (Some(x), _) => (
            x.clone(),
            def.dest_exchange_key
                .clone()
                .unwrap_or_else(|| routing_key.to_string()),
        ),
        (None, Some(q)) => (String::new(), q.clone()),
        (None, None) => (String::new(), routing_key.to_string()),
    }
}

/// The message's properties with dest-publish-properties over them, and the forward and
/// timestamp headers when asked for (RabbitMQ's `x-shovelled`, `x-shovelled-timestamp`).
fn properties(
    def: &Definition,
    mut p: BasicProperties,
    key: &(String, String),
    src_uri: &str,
    dest_uri: &str,
) -> BasicProperties {
    let over = &def.dest_publish_properties;
    if let Some(m) = over.get("delivery_mode").and_then(Value::as_u64) {
        p = p.with_delivery_mode(u8::try_from(m).unwrap_or(2));
    }
    if let Some(n) = over.get("priority").and_then(Value::as_u64) {
        p = p.with_priority(u8::try_from(n).unwrap_or(0));
    }
    if let Some(s) = over.get("content_type").and_then(Value::as_str) {
        p = p.with_content_type(s.into());
    }
    if let Some(s) = over.get("expiration").and_then(Value::as_str) {
        p = p.with_expiration(s.into());
    }
    if !(def.dest_add_forward_headers || def.dest_add_timestamp_header) {
        return p;
    }
    let mut headers = p.headers().clone().unwrap_or_default();
    if def.dest_add_forward_headers {
        let mut t = FieldTable::default();
        let mut put = |k: &str, v: &str| {
            t.insert(k.into(), AMQPValue::LongString(LongString::from(v)));
        };
        put("shovel-name", &key.1);
        put("shovel-type", "dynamic");
        put("shovel-vhost", &key.0);
        put("src-protocol", "amqp091");
        put("src-uri", &super::redact(src_uri));
        if let Some(q) = &def.src_queue {
            put("src-queue", q);
        }
        if let Some(x) = &def.src_exchange {
            put("src-exchange", x);
        }
        put("dest-protocol", "amqp091");
        put("dest-uri", &super::redact(dest_uri));
        if let Some(q) = &def.dest_queue {
            put("dest-queue", q);
        }
        if let Some(x) = &def.dest_exchange {
            put("dest-exchange", x);
        }
        headers.insert(
            "x-shovelled".into(),
            AMQPValue::FieldArray(vec![AMQPValue::FieldTable(t)].into()),
        );
    }
    if def.dest_add_timestamp_header {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        headers.insert("x-shovelled-timestamp".into(), AMQPValue::Timestamp(now));
    }
    p.with_headers(headers)
}

/// Wait for the outstanding confirms, in order, and settle their sources: acked up to the
/// last one confirmed; a nacked one goes back to the source queue.
pub(crate) async fn settle(
    ch: &Channel,
    pending: &mut VecDeque<(u64, lapin::PublisherConfirm)>,
) -> Res<()> {
    let mut acked: Option<u64> = None;
    while let Some((tag, confirm)) = pending.pop_front() {
        let c = confirm.await.map_err(err)?;
        if c.is_nack() {
            if let Some(t) = acked.take() {
                ch.basic_ack(t, BasicAckOptions { multiple: true })
                    .await
                    .map_err(err)?;
            }
            ch.basic_nack(
                tag,
                BasicNackOptions {
                    multiple: false,
                    requeue: true,
                },
            )
            .await
            .map_err(err)?;
        } else {
            acked = Some(tag);
        }
    }
    if let Some(t) = acked {
        ch.basic_ack(t, BasicAckOptions { multiple: true })
            .await
            .map_err(err)?;
    }
    Ok(())
}

/// A JSON object as an AMQP field table (queue and consumer arguments).
fn table(m: &Map<String, Value>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in m {
        if let Some(v) = value(v) {
            t.insert(k.as_str().into(), v);
        }
    }
    t
}

fn value(v: &Value) -> Option<AMQPValue> {
    Some(match v {
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64()?),
        },
        Value::String(s) => AMQPValue::LongString(s.as_str().into()),
        Value::Array(a) => {
            AMQPValue::FieldArray(a.iter().filter_map(value).collect::<Vec<_>>().into())
        }
        Value::Object(o) => AMQPValue::FieldTable(table(o)),
        Value::Null => AMQPValue::Void,
    })
}
