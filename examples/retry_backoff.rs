//! Retry with exponential backoff built on dead-lettering and TTL, the classic RabbitMQ recipe:
//! a failed message is parked in a retry queue whose TTL is the backoff, and whose dead-letter
//! exchange routes it back to the work queue when the TTL expires.
//!
//! `cargo run --example retry_backoff` runs against an embedded Warren; set WARREN_URL to use
//! another broker (the recipe works unchanged on RabbitMQ).

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::time::Instant;

const WORK: &str = "retry-demo.work";
const BACKOFF_MS: [i64; 3] = [100, 200, 400];

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn attempt_of(props: &BasicProperties) -> usize {
    props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-attempt").and_then(warren::args::as_i64))
        .map_or(0, |n| n as usize)
}

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
    ch.queue_declare(
        WORK.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await?;
    // One parking queue per backoff step: messages wait out the TTL there, then dead-letter
    // back to the work queue through the default exchange.
    for ms in BACKOFF_MS {
        let park = format!("retry-demo.wait-{ms}ms");
        ch.queue_declare(
            park.as_str().into(),
            QueueDeclareOptions::default(),
            args(&[
                ("x-message-ttl", AMQPValue::LongLongInt(ms)),
                ("x-dead-letter-exchange", AMQPValue::LongString("".into())),
                (
                    "x-dead-letter-routing-key",
                    AMQPValue::LongString(WORK.into()),
                ),
            ]),
        )
        .await?;
    }
    ch.basic_publish(
        "".into(),
        WORK.into(),
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
        let attempt = attempt_of(&d.properties);
        // The handler fails twice, then succeeds.
        if attempt < 2 {
            let wait = BACKOFF_MS[attempt.min(BACKOFF_MS.len() - 1)];
            println!(
                "{:>5} ms  attempt {attempt} failed; retrying in {wait} ms",
                started.elapsed().as_millis()
            );
            let mut headers = d.properties.headers().clone().unwrap_or_default();
            headers.insert(
                "x-attempt".into(),
                AMQPValue::LongLongInt(attempt as i64 + 1),
            );
            let park = format!("retry-demo.wait-{wait}ms");
            ch.basic_publish(
                "".into(),
                park.as_str().into(),
                BasicPublishOptions::default(),
                &d.data,
                d.properties.clone().with_headers(headers),
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
    for ms in BACKOFF_MS {
        ch.queue_delete(
            format!("retry-demo.wait-{ms}ms").as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await?;
    }
    ch.queue_delete(WORK.into(), QueueDeleteOptions::default())
        .await?;
    conn.close(200, "done".into()).await?;
    Ok(())
}
