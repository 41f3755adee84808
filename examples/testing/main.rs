//! A small application and its tests against `warren::testing::TestBroker`: how a team tests
//! RabbitMQ-dependent code with Warren. The app publishes orders to a topic exchange; billing
//! consumes them; a message billing rejects waits an hour in a retry queue (TTL) and comes
//! back, which the test clock makes take no time at all.
//!
//! `cargo test --example testing` runs the tests (CI runs them with `cargo test`);
//! `cargo run --example testing` runs the app once against a fresh in-process broker.

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

/// The application's topology: orders (topic) → billing; billing dead-letters to a retry
/// queue whose messages expire back to the orders exchange after `retry_ms`.
pub async fn declare_topology(ch: &Channel, retry_ms: i64) -> Result<(), lapin::Error> {
    ch.exchange_declare(
        "orders".into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    let mut billing = FieldTable::default();
    billing.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    billing.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString("billing.retry".into()),
    );
    ch.queue_declare(
        "billing".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        billing,
    )
    .await?;
    ch.queue_bind(
        "billing".into(),
        "orders".into(),
        "order.*".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await?;
    let mut retry = FieldTable::default();
    retry.insert("x-message-ttl".into(), AMQPValue::LongLongInt(retry_ms));
    retry.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("orders".into()),
    );
    retry.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString("order.retried".into()),
    );
    ch.queue_declare(
        "billing.retry".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        retry,
    )
    .await?;
    Ok(())
}

/// Publish one order (persistent, confirmed).
pub async fn publish_order(ch: &Channel, id: u32) -> Result<(), lapin::Error> {
    ch.confirm_select(Default::default()).await?;
    ch.basic_publish(
        "orders".into(),
        "order.created".into(),
        Default::default(),
        format!("order-{id}").as_bytes(),
        BasicProperties::default().with_delivery_mode(2),
    )
    .await?
    .await?;
    Ok(())
}

async fn connect(url: &str) -> (Connection, Channel) {
    let c = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = c.create_channel().await.expect("channel");
    (c, ch)
}

#[tokio::main]
async fn main() {
    let broker = warren::testing::TestBroker::start().await;
    let (_c, ch) = connect(&broker.url()).await;
    declare_topology(&ch, 100).await.expect("topology");
    publish_order(&ch, 1).await.expect("publish");
    println!(
        "billing holds {:?} message(s)",
        broker.message_count("/", "billing")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use warren::testing::TestBroker;

    #[tokio::test]
    async fn an_order_reaches_billing() {
        let broker = TestBroker::start().await;
        let (_c, ch) = connect(&broker.url()).await;
        declare_topology(&ch, 100).await.expect("topology");
        publish_order(&ch, 7).await.expect("publish");
        assert!(
            broker
                .wait_for_messages("/", "billing", 1, Duration::from_secs(5))
                .await
        );
        assert_eq!(
            broker.peek("/", "billing", 1),
            vec![bytes::Bytes::from("order-7")]
        );
    }

    #[tokio::test]
    async fn a_rejected_order_comes_back_after_an_hour_in_the_retry_queue() {
        let broker = TestBroker::start().await;
        let (_c, ch) = connect(&broker.url()).await;
        declare_topology(&ch, 3_600_000).await.expect("topology");
        publish_order(&ch, 8).await.expect("publish");
        let m = ch
            .basic_get("billing".into(), BasicGetOptions::default())
            .await
            .expect("get")
            .expect("the order");
        m.reject(BasicRejectOptions { requeue: false })
            .await
            .expect("reject");
        assert!(
            broker
                .wait_for_messages("/", "billing.retry", 1, Duration::from_secs(5))
                .await
        );
        // The test clock: an hour passes in no time, and the retry is due exactly then.
        broker.advance(Duration::from_secs(3599));
        assert_eq!(
            broker.message_count("/", "billing.retry"),
            Some(1),
            "not yet"
        );
        broker.advance(Duration::from_secs(1));
        assert_eq!(broker.message_count("/", "billing.retry"), Some(0));
        assert_eq!(
            broker.message_count("/", "billing"),
            Some(1),
            "back, routed as order.retried"
        );
        let again = ch
            .basic_get("billing".into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
            .expect("the order again");
        assert_eq!(again.delivery.routing_key.as_str(), "order.retried");
    }

    #[tokio::test]
    async fn reset_gives_the_next_test_a_clean_broker() {
        let broker = TestBroker::start().await;
        {
            let (_c, ch) = connect(&broker.url()).await;
            declare_topology(&ch, 100).await.expect("topology");
            publish_order(&ch, 9).await.expect("publish");
        }
        broker.reset().await;
        assert_eq!(
            broker.message_count("/", "billing"),
            None,
            "the queue is gone"
        );
        let (_c, ch) = connect(&broker.url()).await;
        declare_topology(&ch, 100).await.expect("topology again");
        assert_eq!(broker.message_count("/", "billing"), Some(0));
    }
}
