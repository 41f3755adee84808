//! Retry with backoff on Warren's native x-delayed-message exchange (compatible with RabbitMQ's
//! delayed-message plugin): a failed message is republished with an `x-delay` header and comes
//! back when it is due, without a parking queue per backoff step.
//!
//! `cargo run --example delayed_retry` runs against an embedded Warren; set WARREN_URL to use
//! another broker that has the plugin.

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use std::time::Instant;

const EXCHANGE: &str = "delayed-demo.retry";
const WORK: &str = "delayed-demo.work";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let embedded;
    let url = match std::env::var("WARREN_URL") {
        Ok(u) => u,
        Err(_) => {
            embedded = warren::start(warren::Config {
                port: 0,
                ..Default::default()
            })
            .await?;
            embedded.url()
        }
    };
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let mut xargs = FieldTable::default();
    xargs.insert(
        "x-delayed-type".into(),
        AMQPValue::LongString("direct".into()),
    );
    ch.exchange_declare(
        EXCHANGE.into(),
        ExchangeKind::Custom("x-delayed-message".into()),
        ExchangeDeclareOptions::default(),
        xargs,
    )
    .await?;
    ch.queue_declare(
        WORK.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.queue_bind(
        WORK.into(),
        EXCHANGE.into(),
        "job".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.basic_publish(
        EXCHANGE.into(),
        "job".into(),
        BasicPublishOptions::default(),
        b"flaky job",
        BasicProperties::default(),
    )
    .await?;
    let started = Instant::now();
    let mut consumer = ch
        .basic_consume(
            WORK.into(),
            "worker".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    while let Some(delivery) = consumer.next().await {
        let d = delivery?;
        let attempt = d
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-attempt").and_then(warren::args::as_i64))
            .unwrap_or(0);
        if attempt < 2 {
            let delay = 100 * 2i64.pow(attempt as u32);
            println!(
                "{:>5} ms  attempt {attempt} failed; retrying in {delay} ms",
                started.elapsed().as_millis()
            );
            let mut headers = FieldTable::default();
            headers.insert("x-attempt".into(), AMQPValue::LongLongInt(attempt + 1));
            headers.insert("x-delay".into(), AMQPValue::LongLongInt(delay));
            ch.basic_publish(
                EXCHANGE.into(),
                "job".into(),
                BasicPublishOptions::default(),
                &d.data,
                BasicProperties::default().with_headers(headers),
            )
            .await?;
            d.acker.ack(BasicAckOptions::default()).await?;
        } else {
            println!(
                "{:>5} ms  attempt {attempt} succeeded: {}",
                started.elapsed().as_millis(),
                String::from_utf8_lossy(&d.data)
            );
            d.acker.ack(BasicAckOptions::default()).await?;
            break;
        }
    }
    ch.queue_delete(WORK.into(), QueueDeleteOptions::default())
        .await?;
    ch.exchange_delete(EXCHANGE.into(), ExchangeDeleteOptions::default())
        .await?;
    conn.close(200, "done".into()).await?;
    Ok(())
}
