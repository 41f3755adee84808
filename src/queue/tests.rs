use super::*;
use tokio::sync::mpsc;

fn msg(n: u8) -> Arc<Message> {
    Arc::new(Message::new(
        String::new(),
        "q",
        Default::default(),
        bytes::Bytes::from(vec![n]),
    ))
}

fn queue_with(args: QueueArgs) -> Arc<Queue> {
    Queue::new(
        QueueConfig {
            clock: Default::default(),
            name: "q".into(),
            vhost: "/".into(),
            durable: false,
            exclusive_owner: None,
            auto_delete: false,
            arguments: Default::default(),
            args,
            store_key: None,
            log: None,
            page_to: None,
        },
        None,
    )
}

fn queue() -> Arc<Queue> {
    queue_with(QueueArgs::default())
}

fn bodies(q: &Queue) -> Vec<u8> {
    let mut fx = Effects::default();
    std::iter::from_fn(|| {
        q.get(false, &mut fx)
            .ok()
            .flatten()
            .map(|(m, _)| m.message.body[0])
    })
    .collect()
}

fn consumer(tag: &str, tx: &Outbox, prefetch: u32, priority: i32) -> Consumer {
    Consumer {
        tag: tag.into(),
        conn_id: 1,
        channel: 1,
        outbox: tx.clone(),
        no_ack: false,
        exclusive: false,
        priority,
        credit: Credit::new(prefetch),
        channel_credit: None,
        stream: None,
    }
}

#[test]
fn requeue_restores_original_order() {
    let q = queue();
    let mut fx = Effects::default();
    for n in 0..4 {
        q.publish(msg(n), &mut fx);
    }
    let a = q.get(false, &mut fx).expect("ok").expect("a").0;
    let b = q.get(false, &mut fx).expect("ok").expect("b").0;
    q.requeue([b, a], Return::Released, &mut fx);
    assert_eq!(bodies(&q), vec![0, 1, 2, 3]);
}

#[test]
fn round_robin_respects_prefetch() {
    let q = queue();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut fx = Effects::default();
    for tag in ["a", "b"] {
        q.add_consumer(consumer(tag, &tx, 2, 0), &mut fx)
            .expect("consumer");
    }
    for n in 0..6 {
        q.publish(msg(n), &mut fx);
    }
    let mut tags = Vec::new();
    while let Ok(Outbound::Deliver(d)) = rx.try_recv() {
        tags.push(d.consumer_tag.to_string());
    }
    assert_eq!(tags, vec!["a", "b", "a", "b"]);
    assert_eq!(q.message_count(), 2);
}

#[test]
fn higher_priority_consumers_go_first() {
    let q = queue();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut fx = Effects::default();
    q.add_consumer(consumer("low", &tx, 0, 0), &mut fx)
        .expect("low");
    q.add_consumer(consumer("high", &tx, 2, 5), &mut fx)
        .expect("high");
    for n in 0..4 {
        q.publish(msg(n), &mut fx);
    }
    let mut tags = Vec::new();
    while let Ok(Outbound::Deliver(d)) = rx.try_recv() {
        tags.push(d.consumer_tag.to_string());
    }
    assert_eq!(tags, vec!["high", "high", "low", "low"]);
}

#[test]
fn priorities_and_max_length() {
    let q = queue_with(QueueArgs {
        max_priority: Some(5),
        ..Default::default()
    });
    let mut fx = Effects::default();
    for (n, p) in [(1u8, 0u8), (2, 9), (3, 3), (4, 3)] {
        let m = Message::new(
            String::new(),
            "q",
            amq_protocol::protocol::BasicProperties::default().with_priority(p),
            bytes::Bytes::from(vec![n]),
        );
        q.publish(Arc::new(m), &mut fx);
    }
    // 9 is capped at the maximum 5; FIFO within a level.
    assert_eq!(bodies(&q), vec![2, 3, 4, 1]);

    let q = queue_with(QueueArgs {
        max_length: Some(2),
        ..Default::default()
    });
    for n in 0..5 {
        assert!(q.publish(msg(n), &mut fx));
    }
    assert_eq!(bodies(&q), vec![3, 4]);

    let q = queue_with(QueueArgs {
        max_length: Some(2),
        overflow: Overflow::RejectPublish,
        ..Default::default()
    });
    let accepted: Vec<bool> = (0..4).map(|n| q.publish(msg(n), &mut fx)).collect();
    assert_eq!(accepted, vec![true, true, false, false]);
    assert_eq!(bodies(&q), vec![0, 1]);
}

#[test]
fn ttl_expires_and_dead_letters() {
    let q = queue_with(QueueArgs {
        message_ttl: Some(0),
        dead_letter_exchange: Some("dlx".into()),
        ..Default::default()
    });
    let mut fx = Effects::default();
    q.publish(msg(1), &mut fx);
    assert_eq!(
        q.message_count(),
        0,
        "TTL 0 without a consumer expires at once"
    );
    assert_eq!(fx.dead.len(), 1);
    assert_eq!(fx.dead[0].reason, Reason::Expired);
    assert_eq!(fx.dead[0].exchange, "dlx");
}

fn delivered(rx: &mut mpsc::UnboundedReceiver<Outbound>) -> Vec<(String, u8)> {
    // (consumer tag, body) for every delivery, in order.
    let mut out = Vec::new();
    while let Ok(m) = rx.try_recv() {
        if let Outbound::Deliver(d) = m {
            out.push((d.consumer_tag.to_string(), d.entry.message.body[0]));
        }
    }
    out
}

#[test]
fn a_backlog_goes_out_in_order_up_to_the_prefetch() {
    let q = queue();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut fx = Effects::default();
    for n in 0..5 {
        q.publish(msg(n), &mut fx);
    }
    q.add_consumer(consumer("c", &tx, 3, 0), &mut fx)
        .expect("consumer");
    let got = delivered(&mut rx);
    assert_eq!(
        got,
        vec![("c".into(), 0), ("c".into(), 1), ("c".into(), 2)],
        "the prefetch window, in order"
    );
    assert_eq!(q.unacked_count(), 3);
    assert_eq!(q.message_count(), 2);
}

#[test]
fn a_gone_consumer_gives_its_messages_to_the_next() {
    let q = queue();
    let (dead_tx, dead_rx) = mpsc::unbounded_channel();
    drop(dead_rx);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut fx = Effects::default();
    q.add_consumer(consumer("dead", &dead_tx, 0, 0), &mut fx)
        .expect("dead");
    q.add_consumer(consumer("live", &tx, 0, 0), &mut fx)
        .expect("live");
    for n in 0..4 {
        q.publish(msg(n), &mut fx);
    }
    let bodies: Vec<u8> = delivered(&mut rx).into_iter().map(|(_, b)| b).collect();
    assert_eq!(bodies, vec![0, 1, 2, 3], "nothing lost, order kept");
    assert_eq!(q.consumer_count(), 1);
    assert_eq!(q.message_count(), 0);
    assert_eq!(q.unacked_count(), 4);
}
