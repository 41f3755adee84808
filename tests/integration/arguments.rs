//! Queue arguments as RabbitMQ 3.10.8 takes them: each known argument is accepted by the queue
//! types that support it and refused (406, "... of queue type ...") by the others; values are
//! checked. Runs against RabbitMQ with WARREN_TEST_AMQP_URL and agrees (table measured there).

use crate::common::setup::*;
use crate::common::*;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

/// (argument, value, quorum?, accepted?)
fn cases() -> Vec<(&'static str, AMQPValue, bool, bool)> {
    vec![
        (
            "x-max-in-memory-length",
            AMQPValue::LongInt(10),
            false,
            false,
        ),
        (
            "x-max-in-memory-bytes",
            AMQPValue::LongInt(10),
            false,
            false,
        ),
        ("x-max-in-memory-length", AMQPValue::LongInt(10), true, true),
        ("x-dead-letter-strategy", s("at-least-once"), false, false),
        ("x-dead-letter-strategy", s("at-least-once"), true, true),
        ("x-dead-letter-strategy", s("bogus"), true, false),
        ("x-queue-leader-locator", s("balanced"), false, false),
        ("x-queue-leader-locator", s("client-local"), true, true),
        ("x-queue-master-locator", s("min-masters"), false, true),
        (
            "x-quorum-initial-group-size",
            AMQPValue::LongInt(3),
            true,
            true,
        ),
        (
            "x-quorum-initial-group-size",
            AMQPValue::LongInt(-3),
            true,
            false,
        ),
        (
            "x-single-active-consumer",
            AMQPValue::Boolean(true),
            true,
            true,
        ),
        ("x-queue-mode", s("lazy"), true, false),
        ("x-queue-mode", s("lazy"), false, true),
        ("x-max-priority", AMQPValue::LongInt(5), true, false),
        ("x-overflow", s("reject-publish-dlx"), true, true),
        ("x-delivery-limit", AMQPValue::LongInt(5), false, false),
        (
            "x-initial-cluster-size",
            AMQPValue::LongInt(1),
            false,
            false,
        ),
        ("x-max-age", s("1D"), false, false),
        (
            "x-stream-max-segment-size-bytes",
            AMQPValue::LongInt(100),
            false,
            false,
        ),
        ("x-custom-application-arg", s("kept"), false, true),
    ]
}

#[tokio::test]
async fn arguments_are_taken_by_the_queue_types_that_support_them() {
    for (arg, value, quorum, accepted) in cases() {
        let (_c, ch) = channel().await;
        let name = uniq("args");
        let mut t = FieldTable::default();
        t.insert(arg.into(), value.clone());
        if quorum {
            t.insert("x-queue-type".into(), s("quorum"));
        }
        let r = ch
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                t,
            )
            .await;
        let what = format!(
            "{arg}={value:?} on a {} queue",
            if quorum { "quorum" } else { "classic" }
        );
        match (r, accepted) {
            (Ok(_), true) => {
                let _ = ch
                    .queue_delete(name.as_str().into(), Default::default())
                    .await;
            }
            (Err(e), false) => {
                assert_eq!(code(&e), Some(406), "{what}: {e}");
                assert!(text(&e).contains(arg), "{what}: {e}");
            }
            (Ok(_), false) => {
                let _ = ch
                    .queue_delete(name.as_str().into(), Default::default())
                    .await;
                panic!("{what}: accepted, RabbitMQ refuses it");
            }
            (Err(e), true) => panic!("{what}: refused ({e}), RabbitMQ accepts it"),
        }
    }
}

#[tokio::test]
async fn argument_validation_matches_rabbitmq() {
    let cases: Vec<(&str, AMQPValue, &str)> = vec![
        (
            "x-message-ttl",
            s("abc"),
            "\"expected integer, got longstr\"",
        ),
        (
            "x-message-ttl",
            AMQPValue::LongInt(-1),
            "{value_negative,-1}",
        ),
        ("x-expires", AMQPValue::LongInt(0), "{value_zero,0}"),
        (
            "x-max-length",
            AMQPValue::LongInt(-1),
            "{value_negative,-1}",
        ),
        ("x-overflow", s("bogus"), "invalid_overflow"),
        (
            "x-max-priority",
            AMQPValue::LongInt(300),
            "{max_value_exceeded,300}",
        ),
        (
            "x-queue-mode",
            s("bogus"),
            "\"unsupported queue mode 'bogus'\"",
        ),
        (
            "x-queue-type",
            s("bogus"),
            "\"unsupported queue type 'bogus'\"",
        ),
        (
            "x-single-active-consumer",
            s("yes"),
            "{unacceptable_type,longstr}",
        ),
        (
            "x-dead-letter-routing-key",
            s("rk"),
            "routing_key_but_no_dlx_defined",
        ),
    ];
    for (key, value, why) in cases {
        let (_c, ch) = channel().await;
        let q = uniq("badarg");
        let e = assert_code(
            ch.queue_declare(
                q.as_str().into(),
                QueueDeclareOptions::default(),
                table(&[(key, value)]),
            )
            .await,
            406,
        );
        assert_eq!(
            text(&e),
            format!(
                "PRECONDITION_FAILED - invalid arg '{key}' for queue '{q}' in vhost '/': {why}"
            )
        );
    }
    let (_c, ch) = channel().await;
    let q = uniq("badtype");
    let e = assert_code(
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions::default(),
            table(&[("x-dead-letter-exchange", AMQPValue::LongInt(1))]),
        )
        .await,
        406,
    );
    assert_eq!(text(&e), format!("PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue '{q}' in vhost '/'"));
    // Accepted as RabbitMQ 3.10 accepts them.
    let (_c, ch) = channel().await;
    let q = declare_args(
        &ch,
        &uniq("okargs"),
        table(&[
            ("x-max-priority", int(0)),
            ("x-queue-mode", s("lazy")),
            ("x-unknown-arg", s("ignored")),
        ]),
    )
    .await;
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn redeclare_with_different_arguments_is_406() {
    let (_c, ch) = channel().await;
    let q = declare_args(
        &ch,
        &uniq("redecl"),
        table(&[("x-message-ttl", AMQPValue::LongInt(1000))]),
    )
    .await;
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        table(&[("x-message-ttl", int(1000))]),
    )
    .await
    .expect("same value, other integer type");
    let e = assert_code(
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions::default(),
            table(&[("x-message-ttl", AMQPValue::LongInt(2000))]),
        )
        .await,
        406,
    );
    assert_eq!(text(&e), format!("PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{q}' in vhost '/': received '2000' but current is '1000'"));
    let (_c, ch) = channel().await;
    let e = assert_code(
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
        406,
    );
    assert_eq!(text(&e), format!("PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{q}' in vhost '/': received none but current is the value '1000' of type 'signedint'"));
    let (_c, ch) = channel().await;
    cleanup(&ch, &[&q]).await;
}
