//! Queue semantics: TTL, expiry, dead-lettering, length limits, priorities, consumer
//! priorities, single active consumer, quorum rules, argument validation.

use crate::common::ops::*;
use crate::common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use std::time::Duration;

fn int(n: i64) -> AMQPValue {
    AMQPValue::LongLongInt(n)
}

async fn declare(ch: &lapin::Channel, name: &str, args: FieldTable) -> String {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            auto_delete: false,
            ..Default::default()
        },
        args,
    )
    .await
    .expect("declare")
    .name()
    .to_string()
}

async fn cleanup(ch: &lapin::Channel, queues: &[&str]) {
    for q in queues {
        let _ = ch
            .queue_delete((*q).into(), QueueDeleteOptions::default())
            .await;
    }
}

async fn get_msg(ch: &lapin::Channel, q: &str) -> Option<lapin::message::BasicGetMessage> {
    ch.basic_get(q.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
}

fn death(m: &lapin::message::Delivery, i: usize) -> FieldTable {
    let h = m.properties.headers().clone().expect("headers");
    match h.inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => match &a.as_slice()[i] {
            AMQPValue::FieldTable(t) => t.clone(),
            other => panic!("x-death entry {other:?}"),
        },
        other => panic!("no x-death: {other:?}"),
    }
}

fn str_of(t: &FieldTable, k: &str) -> String {
    match t.inner().get(k) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.to_string(),
        other => panic!("{k}: {other:?}"),
    }
}

fn count_of(t: &FieldTable) -> i64 {
    match t.inner().get("count") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        other => panic!("count: {other:?}"),
    }
}

#[tokio::test]
async fn queue_ttl_expires_messages() {
    let (_c, ch) = channel().await;
    let q = declare(&ch, &uniq("ttl"), table(&[("x-message-ttl", int(100))])).await;
    publish(&ch, "", &q, b"old").await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        message_count(&ch, &q).await,
        0,
        "expired messages are not counted once removed"
    );
    publish(&ch, "", &q, b"new").await;
    assert_eq!(get(&ch, &q).await.as_deref(), Some("new"));
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn per_message_ttl_and_the_lower_one_wins() {
    let (_c, ch) = channel().await;
    let q = declare(
        &ch,
        &uniq("msgttl"),
        table(&[("x-message-ttl", int(60_000))]),
    )
    .await;
    publish_props(
        &ch,
        "",
        &q,
        b"short",
        BasicProperties::default().with_expiration("50".into()),
    )
    .await;
    publish_props(
        &ch,
        "",
        &q,
        b"long",
        BasicProperties::default().with_expiration("60000".into()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(drain(&ch, &q).await, vec!["long"]);
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn ttl_zero_delivers_only_to_a_ready_consumer() {
    let (_c, ch) = channel().await;
    let q = declare(&ch, &uniq("ttl0"), table(&[("x-message-ttl", int(0))])).await;
    publish(&ch, "", &q, b"nobody").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(get(&ch, &q).await.is_none());
    let mut c = consume(&ch, q.as_str(), "", true).await;
    publish(&ch, "", &q, b"someone").await;
    assert_eq!(next(&mut c).await.data, b"someone");
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn invalid_expiration_is_406() {
    for (exp, why) in [("abc", "no_integer"), ("-5", "{value_negative,-5}")] {
        let (_c, ch) = channel().await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm");
        let r = confirmed(
            &ch,
            "".into(),
            "x".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default().with_expiration(exp.into()),
        )
        .await
        .map(|_| ());
        let e = assert_code(r, 406);
        assert_eq!(
            text(&e),
            format!("PRECONDITION_FAILED - invalid expiration '{exp}': {why}")
        );
    }
}

#[tokio::test]
async fn rejected_messages_are_dead_lettered_with_x_death() {
    let (_c, ch) = channel().await;
    let dlq = declare(&ch, &uniq("dlq"), FieldTable::default()).await;
    let q = declare(
        &ch,
        &uniq("src"),
        table(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&dlq)),
        ]),
    )
    .await;
    publish_props(
        &ch,
        "",
        &q,
        b"bad",
        BasicProperties::default()
            .with_expiration("60000".into())
            .with_message_id("m1".into()),
    )
    .await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("m");
    ch.basic_reject(m.delivery_tag, BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    let d = get_within(&ch, &dlq, true).await.expect("dead-lettered");
    assert_eq!(d.delivery.data, b"bad");
    assert_eq!(d.delivery.routing_key.as_str(), dlq);
    assert_eq!(
        d.delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("m1")
    );
    assert!(
        d.delivery.properties.expiration().is_none(),
        "expiration is removed"
    );
    let x = death(&d.delivery, 0);
    assert_eq!(count_of(&x), 1);
    assert_eq!(str_of(&x, "reason"), "rejected");
    assert_eq!(str_of(&x, "queue"), q);
    assert_eq!(str_of(&x, "exchange"), "");
    assert_eq!(str_of(&x, "original-expiration"), "60000");
    assert!(matches!(
        x.inner().get("time"),
        Some(AMQPValue::Timestamp(_))
    ));
    assert!(
        matches!(x.inner().get("routing-keys"), Some(AMQPValue::FieldArray(a)) if a.as_slice() == [s(&q)])
    );
    let h = d.delivery.properties.headers().clone().expect("headers");
    assert_eq!(h.inner().get("x-first-death-reason"), Some(&s("rejected")));
    assert_eq!(h.inner().get("x-first-death-queue"), Some(&s(&q)));
    assert_eq!(h.inner().get("x-first-death-exchange"), Some(&s("")));
    cleanup(&ch, &[&q, &dlq]).await;
}

#[tokio::test]
async fn expired_messages_are_dead_lettered() {
    let (_c, ch) = channel().await;
    let x = uniq("dlx");
    ch.exchange_declare(
        x.as_str().into(),
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("dlx");
    let dlq = declare(&ch, &uniq("dlq"), FieldTable::default()).await;
    bind(&ch, &dlq, &x, "", FieldTable::default()).await;
    let q = declare(
        &ch,
        &uniq("ttlsrc"),
        table(&[
            ("x-message-ttl", int(50)),
            ("x-dead-letter-exchange", s(&x)),
        ]),
    )
    .await;
    publish(&ch, "", &q, b"late").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = get_msg(&ch, &dlq).await.expect("dead-lettered by expiry");
    assert_eq!(d.delivery.exchange.as_str(), x);
    assert_eq!(
        d.delivery.routing_key.as_str(),
        q,
        "original routing key kept without x-dead-letter-routing-key"
    );
    assert_eq!(str_of(&death(&d.delivery, 0), "reason"), "expired");
    cleanup(&ch, &[&q, &dlq]).await;
}

#[tokio::test]
async fn x_death_counts_repeated_deaths() {
    let (_c, ch) = channel().await;
    let (a, b) = (uniq("ping"), uniq("pong"));
    declare(
        &ch,
        &a,
        table(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&b)),
        ]),
    )
    .await;
    declare(
        &ch,
        &b,
        table(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&a)),
        ]),
    )
    .await;
    publish(&ch, "", &a, b"ball").await;
    let mut from = a.clone();
    let mut last = None;
    for _ in 0..3 {
        let m = get_within(&ch, &from, false)
            .await
            .expect("message bounced");
        ch.basic_reject(m.delivery_tag, BasicRejectOptions { requeue: false })
            .await
            .expect("reject");
        last = Some(m);
        from = if from == a { b.clone() } else { a.clone() };
    }
    // Third pass arrives in `b` again having died in a twice and b once... read it.
    let m = get_within(&ch, &from, true)
        .await
        .expect("after three rejections");
    let first = death(&m.delivery, 0);
    assert_eq!(str_of(&first, "queue"), a, "most recent death first");
    assert_eq!(count_of(&first), 2);
    assert_eq!(count_of(&death(&m.delivery, 1)), 1);
    let _ = last;
    cleanup(&ch, &[&a, &b]).await;
}

#[tokio::test]
async fn expiry_cycle_back_to_the_same_queue_is_dropped() {
    let (_c, ch) = channel().await;
    let q = uniq("selfloop");
    declare(
        &ch,
        &q,
        table(&[
            ("x-message-ttl", int(30)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&q)),
        ]),
    )
    .await;
    publish(&ch, "", &q, b"loop").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(message_count(&ch, &q).await, 0);
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn max_length_drop_head_dead_letters_maxlen() {
    let (_c, ch) = channel().await;
    let dlq = declare(&ch, &uniq("dlq"), FieldTable::default()).await;
    let q = declare(
        &ch,
        &uniq("maxlen"),
        table(&[
            ("x-max-length", int(2)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&dlq)),
        ]),
    )
    .await;
    for b in ["1", "2", "3", "4"] {
        publish(&ch, "", &q, b.as_bytes()).await;
    }
    assert_eq!(drain(&ch, &q).await, vec!["3", "4"]);
    let d = get_msg(&ch, &dlq).await.expect("dead-lettered");
    assert_eq!(d.delivery.data, b"1");
    assert_eq!(str_of(&death(&d.delivery, 0), "reason"), "maxlen");
    cleanup(&ch, &[&q, &dlq]).await;
}

#[tokio::test]
async fn max_length_bytes() {
    let (_c, ch) = channel().await;
    let q = declare(
        &ch,
        &uniq("maxbytes"),
        table(&[("x-max-length-bytes", int(10))]),
    )
    .await;
    for b in ["aaaa", "bbbb", "cccc"] {
        publish(&ch, "", &q, b.as_bytes()).await;
    }
    assert_eq!(drain(&ch, &q).await, vec!["bbbb", "cccc"]);
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn reject_publish_nacks_confirms() {
    let (_c, ch) = channel().await;
    let dlq = declare(&ch, &uniq("dlq"), FieldTable::default()).await;
    let q = declare(
        &ch,
        &uniq("rejpub"),
        table(&[
            ("x-max-length", int(1)),
            ("x-overflow", s("reject-publish-dlx")),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&dlq)),
        ]),
    )
    .await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let mut results = Vec::new();
    for b in ["1", "2", "3"] {
        let c = ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                b.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("pub");
        results.push(c.await.expect("confirm").is_ack());
    }
    assert_eq!(results, vec![true, false, false]);
    assert_eq!(drain(&ch, &q).await, vec!["1"]);
    assert_eq!(
        drain(&ch, &dlq).await,
        vec!["2", "3"],
        "reject-publish-dlx dead-letters the refused"
    );
    // Without confirms the refused message is dropped silently.
    let (_c2, ch2) = channel().await;
    let q2 = declare(
        &ch2,
        &uniq("rejpub2"),
        table(&[
            ("x-max-length", int(1)),
            ("x-overflow", s("reject-publish")),
        ]),
    )
    .await;
    publish(&ch2, "", &q2, b"a").await;
    publish(&ch2, "", &q2, b"b").await;
    assert_eq!(drain(&ch2, &q2).await, vec!["a"]);
    cleanup(&ch2, &[&q, &dlq, &q2]).await;
}

#[tokio::test]
async fn priority_queue_orders_by_priority_then_fifo() {
    let (_c, ch) = channel().await;
    let q = declare(&ch, &uniq("prio"), table(&[("x-max-priority", int(10))])).await;
    for (b, p) in [
        ("low", 1u8),
        ("high1", 9),
        ("mid", 5),
        ("high2", 9),
        ("none", 0),
        ("capped", 200),
    ] {
        publish_props(
            &ch,
            "",
            &q,
            b.as_bytes(),
            BasicProperties::default().with_priority(p),
        )
        .await;
    }
    // 200 is capped at the maximum, 10: above 9.
    assert_eq!(
        drain(&ch, &q).await,
        vec!["capped", "high1", "high2", "mid", "low", "none"]
    );
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn consumer_priorities() {
    let (_c, ch) = channel().await;
    let q = declare(&ch, &uniq("cprio"), FieldTable::default()).await;
    let ch_low = _c.create_channel().await.expect("ch");
    let ch_high = _c.create_channel().await.expect("ch");
    ch_high
        .basic_qos(2, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut low = consume(&ch_low, q.as_str(), "low", false).await;
    let mut high = ch_high
        .basic_consume(
            q.as_str().into(),
            "high".into(),
            BasicConsumeOptions::default(),
            table(&[("x-priority", int(10))]),
        )
        .await
        .expect("high");
    for i in 0..4 {
        publish(&ch, "", &q, format!("{i}").as_bytes()).await;
    }
    assert_eq!(next(&mut high).await.data, b"0");
    assert_eq!(next(&mut high).await.data, b"1");
    // The high-priority consumer is full (prefetch 2): the rest goes to the low one.
    assert_eq!(next(&mut low).await.data, b"2");
    assert_eq!(next(&mut low).await.data, b"3");
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn single_active_consumer() {
    let (c, ch) = channel().await;
    let q = declare(
        &ch,
        &uniq("sac"),
        table(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await;
    let ch1 = c.create_channel().await.expect("ch1");
    let ch2 = c.create_channel().await.expect("ch2");
    let mut first = consume(&ch1, q.as_str(), "first", true).await;
    let mut second = consume(&ch2, q.as_str(), "second", true).await;
    for i in 0..3 {
        publish(&ch, "", &q, format!("{i}").as_bytes()).await;
    }
    for i in 0..3 {
        assert_eq!(next(&mut first).await.data, format!("{i}").as_bytes());
    }
    assert!(
        quiet(&mut second, 200).await,
        "only the active consumer receives"
    );
    ch1.basic_cancel("first".into(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    publish(&ch, "", &q, b"after").await;
    assert_eq!(next(&mut second).await.data, b"after");
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn unused_queue_expires() {
    let (_c, ch) = channel().await;
    let q = declare(&ch, &uniq("expires"), table(&[("x-expires", int(150))])).await;
    publish(&ch, "", &q, b"x").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_c2, ch2) = channel().await;
    assert_code(
        ch2.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        404,
    );
}

#[tokio::test]
async fn queue_with_a_consumer_does_not_expire() {
    let (_c, ch) = channel().await;
    let q = declare(
        &ch,
        &uniq("expires-used"),
        table(&[("x-expires", int(150))]),
    )
    .await;
    let _consumer = consume(&ch, q.as_str(), "", false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    message_count(&ch, &q).await;
    cleanup(&ch, &[&q]).await;
}

#[tokio::test]
async fn quorum_queue_rules_and_delivery_limit() {
    let c = connect().await;
    let quorum = || table(&[("x-queue-type", s("quorum"))]);
    for (opts, prop) in [
        (QueueDeclareOptions::default(), "non-durable"),
        (
            QueueDeclareOptions {
                durable: true,
                exclusive: true,
                ..Default::default()
            },
            "exclusive-owner",
        ),
        (
            QueueDeclareOptions {
                durable: true,
                auto_delete: true,
                ..Default::default()
            },
            "auto-delete",
        ),
    ] {
        let ch = c.create_channel().await.expect("ch");
        let e = assert_code(
            ch.queue_declare(uniq("qq").as_str().into(), opts, quorum())
                .await,
            406,
        );
        assert!(
            text(&e).contains(&format!("invalid property '{prop}'")),
            "{}",
            text(&e)
        );
    }
    let ch = c.create_channel().await.expect("ch");
    let dlq = declare(&ch, &uniq("qq-dlq"), FieldTable::default()).await;
    let q = uniq("qq");
    let mut args = quorum();
    args.insert("x-delivery-limit".into(), int(1));
    args.insert("x-dead-letter-exchange".into(), s(""));
    args.insert("x-dead-letter-routing-key".into(), s(&dlq));
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .expect("quorum queue");
    publish(&ch, "", &q, b"poison").await;
    let mut counts = Vec::new();
    for _ in 0..2 {
        let m = get_within(&ch, &q, false).await.expect("message");
        counts.push(
            match m
                .delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("x-delivery-count").cloned())
            {
                Some(v) => warren::args::as_i64(&v).unwrap_or(-1),
                None => 0,
            },
        );
        ch.basic_nack(
            m.delivery_tag,
            BasicNackOptions {
                multiple: false,
                requeue: true,
            },
        )
        .await
        .expect("nack");
    }
    assert_eq!(counts, vec![0, 1]);
    let d = get_within(&ch, &dlq, true)
        .await
        .expect("dead-lettered past the delivery limit");
    assert_eq!(str_of(&death(&d.delivery, 0), "reason"), "delivery_limit");
    cleanup(&ch, &[&q, &dlq]).await;
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
    let q = declare(
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
    let q = declare(
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

#[tokio::test]
async fn stream_queues_are_refused_clearly() {
    if external() {
        return; // RabbitMQ 3.10 has streams.
    }
    let (_c, ch) = channel().await;
    let e = assert_code(
        ch.queue_declare(
            uniq("stream").as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            table(&[("x-queue-type", s("stream"))]),
        )
        .await,
        406,
    );
    assert!(
        text(&e).contains("stream queues are not supported"),
        "{}",
        text(&e)
    );
}

async fn delayed_exchange(ch: &lapin::Channel, inner: &str, durable: bool) -> String {
    let x = uniq("delayed");
    ch.exchange_declare(
        x.as_str().into(),
        lapin::ExchangeKind::Custom("x-delayed-message".into()),
        ExchangeDeclareOptions {
            durable,
            ..Default::default()
        },
        table(&[("x-delayed-type", s(inner))]),
    )
    .await
    .expect("delayed exchange");
    x
}

#[tokio::test]
async fn delayed_messages_are_routed_when_due() {
    if external() {
        return; // Stock RabbitMQ lacks the delayed-message plugin.
    }
    let (_c, ch) = channel().await;
    let x = delayed_exchange(&ch, "direct", false).await;
    let q = temp_queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let delayed = |ms: i64| BasicProperties::default().with_headers(table(&[("x-delay", int(ms))]));
    let started = std::time::Instant::now();
    for (body, ms) in [("later", 400), ("sooner", 150)] {
        let c = ch
            .basic_publish(
                x.as_str().into(),
                "k".into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body.as_bytes(),
                delayed(ms),
            )
            .await
            .expect("pub")
            .await
            .expect("confirm");
        assert!(
            matches!(c, lapin::Confirmation::Ack(None)),
            "held, confirmed, no return: {c:?}"
        );
    }
    publish(&ch, &x, "k", b"now").await;
    assert_eq!(
        drain(&ch, &q).await,
        vec!["now"],
        "no x-delay: routed at once"
    );
    let mut cons = consume(&ch, q.as_str(), "", true).await;
    assert_eq!(next(&mut cons).await.data, b"sooner");
    assert!(started.elapsed() >= Duration::from_millis(140));
    assert_eq!(next(&mut cons).await.data, b"later");
    assert!(started.elapsed() >= Duration::from_millis(390));
    ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete");
}

#[tokio::test]
async fn delayed_exchange_needs_a_valid_delayed_type() {
    if external() {
        return;
    }
    let (c, ch) = channel().await;
    let e = assert_code(
        ch.exchange_declare(
            uniq("bad").as_str().into(),
            lapin::ExchangeKind::Custom("x-delayed-message".into()),
            ExchangeDeclareOptions::default(),
            table(&[("x-delayed-type", s("nope"))]),
        )
        .await,
        406,
    );
    assert!(text(&e).contains("x-delayed-type"), "{}", text(&e));
    // Topic routing through a delayed exchange.
    let ch = c.create_channel().await.expect("ch");
    let x = delayed_exchange(&ch, "topic", false).await;
    let q = temp_queue(&ch).await;
    bind(&ch, &q, &x, "a.#", FieldTable::default()).await;
    publish_props(
        &ch,
        &x,
        "a.b.c",
        b"t",
        BasicProperties::default().with_headers(table(&[("x-delay", int(50))])),
    )
    .await;
    publish_props(
        &ch,
        &x,
        "z",
        b"nomatch",
        BasicProperties::default().with_headers(table(&[("x-delay", int(50))])),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(drain(&ch, &q).await, vec!["t"]);
    ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete");
}
