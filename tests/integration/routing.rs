//! Routing through every exchange type, e2e bindings, alternate exchanges, mandatory returns and
//! direct reply-to.

use crate::common::ops::*;
use crate::common::setup::*;
use crate::common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};

async fn exchange(ch: &lapin::Channel, kind: ExchangeKind) -> String {
    declare_exchange(ch, kind, true).await
}

async fn declare_exchange(ch: &lapin::Channel, kind: ExchangeKind, auto_delete: bool) -> String {
    let x = uniq("x");
    ch.exchange_declare(
        x.as_str().into(),
        kind,
        ExchangeDeclareOptions {
            auto_delete,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    x
}

#[tokio::test]
async fn default_exchange_routes_by_queue_name() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    publish(&ch, "", &q, b"hello").await;
    assert_eq!(drain(&ch, &q).await, vec!["hello"]);
}

#[tokio::test]
async fn direct_exchange() {
    let (_c, ch) = channel().await;
    let x = exchange(&ch, ExchangeKind::Direct).await;
    let (q1, q2) = (temp_queue(&ch).await, temp_queue(&ch).await);
    bind(&ch, &q1, &x, "a", FieldTable::default()).await;
    bind(&ch, &q2, &x, "b", FieldTable::default()).await;
    bind(&ch, &q2, &x, "a", FieldTable::default()).await;
    publish(&ch, &x, "a", b"1").await;
    publish(&ch, &x, "b", b"2").await;
    publish(&ch, &x, "c", b"3").await;
    assert_eq!(drain(&ch, &q1).await, vec!["1"]);
    assert_eq!(drain(&ch, &q2).await, vec!["1", "2"]);
}

#[tokio::test]
async fn fanout_exchange_ignores_keys() {
    let (_c, ch) = channel().await;
    let x = exchange(&ch, ExchangeKind::Fanout).await;
    let qs = [
        temp_queue(&ch).await,
        temp_queue(&ch).await,
        temp_queue(&ch).await,
    ];
    for q in &qs {
        bind(&ch, q, &x, "ignored", FieldTable::default()).await;
    }
    publish(&ch, &x, "whatever", b"f").await;
    for q in &qs {
        assert_eq!(drain(&ch, q).await, vec!["f"]);
    }
}

#[tokio::test]
async fn topic_exchange_wildcards() {
    let (_c, ch) = channel().await;
    let x = exchange(&ch, ExchangeKind::Topic).await;
    let patterns = ["a.*.c", "a.#", "#", "*.b", "a.b.c", "#.c"];
    let mut queues = Vec::new();
    for p in patterns {
        let q = temp_queue(&ch).await;
        bind(&ch, &q, &x, p, FieldTable::default()).await;
        queues.push(q);
    }
    for key in ["a.b.c", "a.b", "x.b", "c", "a", ""] {
        publish(&ch, &x, key, key.as_bytes()).await;
    }
    let got: Vec<Vec<String>> = {
        let mut v = Vec::new();
        for q in &queues {
            v.push(drain(&ch, q).await);
        }
        v
    };
    let k = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(got[0], k(&["a.b.c"]));
    assert_eq!(got[1], k(&["a.b.c", "a.b", "a"]));
    assert_eq!(got[2], k(&["a.b.c", "a.b", "x.b", "c", "a", ""]));
    assert_eq!(got[3], k(&["a.b", "x.b"]));
    assert_eq!(got[4], k(&["a.b.c"]));
    assert_eq!(got[5], k(&["a.b.c", "c"]));
}

#[tokio::test]
async fn headers_exchange_all_and_any() {
    let (_c, ch) = channel().await;
    let x = exchange(&ch, ExchangeKind::Headers).await;
    let (qall, qany) = (temp_queue(&ch).await, temp_queue(&ch).await);
    bind(
        &ch,
        &qall,
        &x,
        "",
        table(&[("x-match", s("all")), ("a", s("1")), ("b", s("2"))]),
    )
    .await;
    bind(
        &ch,
        &qany,
        &x,
        "",
        table(&[("x-match", s("any")), ("a", s("1")), ("b", s("2"))]),
    )
    .await;
    let with = |pairs: &[(&str, AMQPValue)]| BasicProperties::default().with_headers(table(pairs));
    publish_props(
        &ch,
        &x,
        "",
        b"both",
        with(&[("a", s("1")), ("b", s("2")), ("c", s("3"))]),
    )
    .await;
    publish_props(&ch, &x, "", b"one", with(&[("a", s("1"))])).await;
    publish_props(&ch, &x, "", b"none", with(&[("a", s("9"))])).await;
    publish(&ch, &x, "", b"noheaders").await;
    assert_eq!(drain(&ch, &qall).await, vec!["both"]);
    assert_eq!(drain(&ch, &qany).await, vec!["both", "one"]);
}

#[tokio::test]
async fn headers_exchange_with_x_variants() {
    if external() {
        return; // all-with-x / any-with-x came in RabbitMQ 3.11; the referee is 3.10.
    }
    let (_c, ch) = channel().await;
    let x = exchange(&ch, ExchangeKind::Headers).await;
    let (qall, qany, qplain) = (
        temp_queue(&ch).await,
        temp_queue(&ch).await,
        temp_queue(&ch).await,
    );
    bind(
        &ch,
        &qall,
        &x,
        "",
        table(&[("x-match", s("all-with-x")), ("x-tenant", s("t1"))]),
    )
    .await;
    bind(
        &ch,
        &qany,
        &x,
        "",
        table(&[
            ("x-match", s("any-with-x")),
            ("x-tenant", s("t1")),
            ("k", s("v")),
        ]),
    )
    .await;
    bind(
        &ch,
        &qplain,
        &x,
        "",
        table(&[("x-match", s("all")), ("x-tenant", s("t1"))]),
    )
    .await;
    let with = |pairs: &[(&str, AMQPValue)]| BasicProperties::default().with_headers(table(pairs));
    publish_props(&ch, &x, "", b"t1", with(&[("x-tenant", s("t1"))])).await;
    publish_props(&ch, &x, "", b"t2", with(&[("x-tenant", s("t2"))])).await;
    assert_eq!(drain(&ch, &qall).await, vec!["t1"]);
    assert_eq!(drain(&ch, &qany).await, vec!["t1"]);
    // Plain all ignores x- keys, so an empty pattern matches everything.
    assert_eq!(drain(&ch, &qplain).await, vec!["t1", "t2"]);
}

#[tokio::test]
async fn built_in_exchanges_exist() {
    let (_c, ch) = channel().await;
    for (name, kind) in [
        ("amq.direct", ExchangeKind::Direct),
        ("amq.fanout", ExchangeKind::Fanout),
        ("amq.topic", ExchangeKind::Topic),
        ("amq.headers", ExchangeKind::Headers),
        ("amq.match", ExchangeKind::Headers),
    ] {
        ch.exchange_declare(
            name.into(),
            kind,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect(name);
    }
    let q = temp_queue(&ch).await;
    bind(&ch, &q, "amq.direct", &q, FieldTable::default()).await;
    publish(&ch, "amq.direct", &q, b"d").await;
    assert_eq!(drain(&ch, &q).await, vec!["d"]);
}

#[tokio::test]
async fn exchange_to_exchange_bindings() {
    let (_c, ch) = channel().await;
    // Not auto-delete: unbinding the last binding would delete them (as in RabbitMQ).
    let src = declare_exchange(&ch, ExchangeKind::Topic, false).await;
    let dst = declare_exchange(&ch, ExchangeKind::Fanout, false).await;
    let q = temp_queue(&ch).await;
    bind(&ch, &q, &dst, "", FieldTable::default()).await;
    ch.exchange_bind(
        dst.as_str().into(),
        src.as_str().into(),
        "logs.#".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("e2e");
    // A cycle must not loop or duplicate.
    ch.exchange_bind(
        src.as_str().into(),
        dst.as_str().into(),
        "".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("cycle");
    publish(&ch, &src, "logs.error", b"e").await;
    publish(&ch, &src, "metrics.cpu", b"m").await;
    assert_eq!(drain(&ch, &q).await, vec!["e"]);
    ch.exchange_unbind(
        dst.as_str().into(),
        src.as_str().into(),
        "logs.#".into(),
        ExchangeUnbindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("unbind");
    publish(&ch, &src, "logs.error", b"e2").await;
    assert!(drain(&ch, &q).await.is_empty());
    for x in [&src, &dst] {
        ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await
            .expect("delete");
    }
}

#[tokio::test]
async fn alternate_exchange_takes_unroutable_messages() {
    let (_c, ch) = channel().await;
    let ae = exchange(&ch, ExchangeKind::Fanout).await;
    let x = uniq("with-ae");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        table(&[("alternate-exchange", s(&ae))]),
    )
    .await
    .expect("x");
    let (qmain, qae) = (temp_queue(&ch).await, temp_queue(&ch).await);
    bind(&ch, &qmain, &x, "k", FieldTable::default()).await;
    bind(&ch, &qae, &ae, "", FieldTable::default()).await;
    publish(&ch, &x, "k", b"routed").await;
    publish(&ch, &x, "other", b"unroutable").await;
    assert_eq!(drain(&ch, &qmain).await, vec!["routed"]);
    assert_eq!(drain(&ch, &qae).await, vec!["unroutable"]);
}

#[tokio::test]
async fn mandatory_unroutable_is_returned_with_312_before_the_ack() {
    let (_c, ch) = channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let confirm = ch
        .basic_publish(
            "".into(),
            uniq("nobody").as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"lost",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    let lapin::Confirmation::Ack(Some(returned)) = confirm else {
        panic!("expected an ack carrying the returned message, got {confirm:?}");
    };
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned.delivery.data, b"lost");
    // Not mandatory: silently dropped, still acked.
    let c2 = ch
        .basic_publish(
            "".into(),
            uniq("nobody").as_str().into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(matches!(c2, lapin::Confirmation::Ack(None)));
}

#[tokio::test]
async fn direct_reply_to_round_trip() {
    let (_c, requester) = channel().await;
    let (_c2, server) = channel().await;
    let rpc_queue = temp_queue(&server).await;
    let mut replies = consume(&requester, "amq.rabbitmq.reply-to", "", true).await;
    let mut requests = consume(&server, rpc_queue.as_str(), "", true).await;
    publish_props(
        &requester,
        "",
        &rpc_queue,
        b"ping",
        BasicProperties::default()
            .with_reply_to("amq.rabbitmq.reply-to".into())
            .with_correlation_id("c1".into()),
    )
    .await;
    let req = next(&mut requests).await;
    let reply_to = req
        .properties
        .reply_to()
        .clone()
        .expect("reply_to")
        .to_string();
    assert!(reply_to.starts_with("amq.rabbitmq.reply-to."), "{reply_to}");
    server
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let c = server
        .basic_publish(
            "".into(),
            reply_to.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"pong",
            BasicProperties::default().with_correlation_id("c1".into()),
        )
        .await
        .expect("reply")
        .await
        .expect("confirm");
    // A delivered reply counts as routed (current RabbitMQ); RabbitMQ 3.10 still returns a
    // mandatory reply with 312 although it delivers it too.
    assert!(
        external() || matches!(c, lapin::Confirmation::Ack(None)),
        "a reply counts as routed: {c:?}"
    );
    let reply = next(&mut replies).await;
    assert_eq!(reply.data, b"pong");
    assert_eq!(
        reply
            .properties
            .correlation_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("c1")
    );
    let q = requester
        .queue_declare(
            "amq.rabbitmq.reply-to".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("pseudo-queue");
    assert_eq!(q.message_count(), 0);
}

#[tokio::test]
async fn direct_reply_to_rules() {
    let (c, ch) = channel().await;
    let e = assert_code(
        ch.basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await,
        406,
    );
    assert!(
        text(&e).contains("reply consumer cannot acknowledge"),
        "{}",
        text(&e)
    );
    let ch = c.create_channel().await.expect("ch");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let r = confirmed(
        &ch,
        "".into(),
        "x".into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default().with_reply_to("amq.rabbitmq.reply-to".into()),
    )
    .await
    .map(|_| ());
    let e = assert_code(r, 406);
    assert!(
        text(&e).contains("fast reply consumer does not exist"),
        "{}",
        text(&e)
    );
}

#[tokio::test]
async fn unbind_stops_routing() {
    let (_c, ch) = channel().await;
    let x = declare_exchange(&ch, ExchangeKind::Direct, false).await;
    let q = temp_queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    publish(&ch, &x, "k", b"1").await;
    ch.queue_unbind(
        q.as_str().into(),
        x.as_str().into(),
        "k".into(),
        FieldTable::default(),
    )
    .await
    .expect("unbind");
    publish(&ch, &x, "k", b"2").await;
    assert_eq!(drain(&ch, &q).await, vec!["1"]);
    ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete");
}

#[tokio::test]
async fn properties_and_headers_survive_routing() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(2)
        .with_priority(3)
        .with_correlation_id("corr".into())
        .with_reply_to("rq".into())
        .with_expiration("60000".into())
        .with_message_id("mid".into())
        .with_timestamp(1_700_000_000)
        .with_type("t".into())
        .with_app_id("app".into())
        .with_headers(table(&[
            ("h", s("v")),
            ("n", AMQPValue::LongLongInt(-5)),
            ("b", AMQPValue::Boolean(true)),
        ]));
    publish_props(&ch, "", &q, b"{}", props.clone()).await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("message");
    assert_eq!(m.delivery.properties, props);
    assert_eq!(m.delivery.routing_key.as_str(), q);
    assert_eq!(m.delivery.exchange.as_str(), "");
}

#[tokio::test]
async fn topic_hash_matches_zero_words() {
    let (_c, ch) = channel().await;
    let x = topic(&ch).await;
    assert!(routed(&ch, &x, "a.#", "a").await);
    assert!(routed(&ch, &x, "#.a", "a").await);
    assert!(routed(&ch, &x, "a.#.b", "a.b").await);
    drop_exchange(&ch, &x).await;
}

#[tokio::test]
async fn topic_star_needs_exactly_one_word() {
    let (_c, ch) = channel().await;
    let x = topic(&ch).await;
    assert!(!routed(&ch, &x, "a.*", "a").await);
    assert!(!routed(&ch, &x, "a.*", "a.b.c").await);
    assert!(routed(&ch, &x, "*.*", "a.b").await);
    drop_exchange(&ch, &x).await;
}

#[tokio::test]
async fn topic_empty_words_and_literal_dots() {
    let (_c, ch) = channel().await;
    let x = topic(&ch).await;
    assert!(routed(&ch, &x, "a..b", "a..b").await);
    assert!(routed(&ch, &x, "a.*.b", "a..b").await);
    assert!(!routed(&ch, &x, "a.b", "a.b.").await);
    drop_exchange(&ch, &x).await;
}

#[tokio::test]
async fn headers_void_value_matches_presence() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    bind(
        &ch,
        &q,
        "amq.headers",
        "",
        table(&[("x-match", s("any")), ("flag", AMQPValue::Void)]),
    )
    .await;
    publish_props(
        &ch,
        "amq.headers",
        "",
        b"has",
        BasicProperties::default().with_headers(table(&[("flag", s("anything"))])),
    )
    .await;
    publish_props(
        &ch,
        "amq.headers",
        "",
        b"not",
        BasicProperties::default().with_headers(table(&[("other", s("x"))])),
    )
    .await;
    assert_eq!(drain(&ch, &q).await, vec!["has"]);
}

#[tokio::test]
async fn headers_numeric_values_compare_by_value() {
    let (_c, ch) = channel().await;
    let q = temp_queue(&ch).await;
    bind(
        &ch,
        &q,
        "amq.match",
        "",
        table(&[("n", AMQPValue::LongInt(5))]),
    )
    .await;
    publish_props(
        &ch,
        "amq.match",
        "",
        b"five",
        BasicProperties::default().with_headers(table(&[("n", AMQPValue::LongInt(5))])),
    )
    .await;
    publish_props(
        &ch,
        "amq.match",
        "",
        b"six",
        BasicProperties::default().with_headers(table(&[("n", AMQPValue::LongInt(6))])),
    )
    .await;
    assert_eq!(drain(&ch, &q).await, vec!["five"]);
}

#[tokio::test]
async fn fanout_to_many_queues_shares_one_message() {
    let (_c, ch) = channel().await;
    let x = uniq("fan");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("x");
    let mut qs = Vec::new();
    for _ in 0..20 {
        let q = temp_queue(&ch).await;
        bind(&ch, &q, &x, "", FieldTable::default()).await;
        qs.push(q);
    }
    publish(&ch, &x, "", &vec![7u8; 50_000]).await;
    for q in &qs {
        let m = ch
            .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
            .expect("m");
        assert_eq!(m.delivery.data.len(), 50_000);
    }
}

#[tokio::test]
async fn cc_and_bcc_headers_route_to_more_keys() {
    let (_c, ch) = channel().await;
    let x = uniq("ccx");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("x");
    let (qa, qb, qc) = (
        temp_queue(&ch).await,
        temp_queue(&ch).await,
        temp_queue(&ch).await,
    );
    bind(&ch, &qa, &x, "a", FieldTable::default()).await;
    bind(&ch, &qb, &x, "b", FieldTable::default()).await;
    bind(&ch, &qc, &x, "c", FieldTable::default()).await;
    let list = |k: &str| AMQPValue::FieldArray(vec![s(k)].into());
    let props =
        BasicProperties::default().with_headers(table(&[("CC", list("b")), ("BCC", list("c"))]));
    publish_props(&ch, &x, "a", b"m", props).await;
    for q in [&qa, &qb, &qc] {
        let m = get_within(&ch, q, true)
            .await
            .expect("delivered to every listed key");
        let h = m.delivery.properties.headers().clone().unwrap_or_default();
        assert!(h.inner().contains_key("CC"), "CC is kept");
        assert!(!h.inner().contains_key("BCC"), "BCC is removed");
    }
}
