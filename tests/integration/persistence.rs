//! Storage across restarts of the real binary: durable topology, persistent messages, crashes.

use crate::common::ops::*;
use crate::common::*;
use crate::process::{temp_dir, Warren};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

async fn open(w: &Warren) -> (Connection, lapin::Channel) {
    channel_at(&w.url()).await
}

async fn passive_queue(ch: &lapin::Channel, q: &str) -> Result<u32, lapin::Error> {
    ch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .map(|q| q.message_count())
}

#[tokio::test]
async fn durable_topology_and_persistent_messages_survive_restart() {
    if external() {
        return;
    }
    let dir = temp_dir("restart");
    let w = Warren::start(&dir, &[]).await;
    {
        let (_c, ch) = open(&w).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm");
        ch.exchange_declare(
            "dx".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            table(&[("alternate-exchange", s("ae"))]),
        )
        .await
        .expect("dx");
        ch.exchange_declare(
            "ae".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("ae");
        ch.exchange_declare(
            "tx".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("transient x");
        ch.queue_declare(
            "dq".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("dq");
        ch.queue_declare(
            "aeq".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("aeq");
        ch.queue_declare(
            "tq".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("transient q");
        bind(&ch, "dq", "dx", "a.#", FieldTable::default()).await;
        bind(&ch, "aeq", "ae", "", FieldTable::default()).await;
        bind(&ch, "tq", "dx", "t", FieldTable::default()).await;
        ch.exchange_bind(
            "dx".into(),
            "amq.fanout".into(),
            "".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("e2e");
        for i in 0..10u8 {
            let props = if i % 2 == 0 {
                persistent()
            } else {
                BasicProperties::default()
            };
            ch.basic_publish(
                "dx".into(),
                "a.b".into(),
                BasicPublishOptions::default(),
                &[i],
                props,
            )
            .await
            .expect("pub")
            .await
            .expect("confirm");
        }
        // A persistent message taken and acked is gone for good; one unacked comes back.
        let m = ch
            .basic_get("dq".into(), BasicGetOptions::default())
            .await
            .expect("get")
            .expect("m0");
        assert_eq!(m.delivery.data, vec![0]);
        ch.basic_ack(m.delivery_tag, BasicAckOptions::default())
            .await
            .expect("ack");
        let m2 = ch
            .basic_get("dq".into(), BasicGetOptions::default())
            .await
            .expect("get")
            .expect("m1");
        assert_eq!(m2.delivery.data, vec![1]);
        ch.queue_declare(
            "gone".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("gone");
        ch.queue_delete("gone".into(), QueueDeleteOptions::default())
            .await
            .expect("delete gone");
        // Leave the connection open (m1 unacked) and stop the broker.
        w.stop().await;
    }
    let w = Warren::start(&dir, &[]).await;
    let (c, ch) = open(&w).await;
    // Persistent ones (0 acked, 2, 4, 6, 8) remain; transient ones and the acked one do not.
    let got: Vec<u8> = {
        let mut v = Vec::new();
        while let Some(m) = ch
            .basic_get("dq".into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
        {
            assert!(m.delivery.redelivered);
            assert_eq!(m.delivery.properties.delivery_mode(), &Some(2));
            v.push(m.delivery.data[0]);
        }
        v
    };
    assert_eq!(got, vec![2, 4, 6, 8]);
    for (name, kind) in [("dx", ExchangeKind::Topic), ("ae", ExchangeKind::Fanout)] {
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
    // Bindings between durable ends, alternate exchange and e2e binding are intact.
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    for (x, key) in [("dx", "a.z"), ("dx", "nomatch"), ("amq.fanout", "a.q")] {
        ch.basic_publish(
            x.into(),
            key.into(),
            BasicPublishOptions::default(),
            key.as_bytes(),
            persistent(),
        )
        .await
        .expect("pub")
        .await
        .expect("confirm");
    }
    assert_eq!(drain(&ch, "dq").await, vec!["a.z", "a.q"]);
    assert_eq!(drain(&ch, "aeq").await, vec!["nomatch"]);
    assert_code(passive_queue(&ch, "tq").await, 404);
    let ch = c.create_channel().await.expect("ch");
    assert_code(
        ch.exchange_declare(
            "tx".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        404,
    );
    let ch = c.create_channel().await.expect("ch");
    assert_code(passive_queue(&ch, "gone").await, 404);
    w.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn second_warren_on_the_same_directory_fails_clearly() {
    if external() {
        return;
    }
    let dir = temp_dir("locked");
    let w = Warren::start(&dir, &[]).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .args([
            "--port",
            &crate::process::free_port().to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .expect("run second warren");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&dir.display().to_string()),
        "error names the directory: {err}"
    );
    w.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn in_memory_keeps_nothing() {
    if external() {
        return;
    }
    let dir = temp_dir("inmem");
    let w = Warren::start(&dir, &["--in-memory"]).await;
    {
        let (_c, ch) = open(&w).await;
        ch.queue_declare(
            "dq".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("dq");
        publish_props(&ch, "", "dq", b"x", persistent()).await;
    }
    w.stop().await;
    let w = Warren::start(&dir, &["--in-memory"]).await;
    let (_c, ch) = open(&w).await;
    assert_code(passive_queue(&ch, "dq").await, 404);
    w.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Publish persistent messages with confirms while a consumer acks some; SIGKILL at a random
/// moment; restart; every confirmed message not acked must be there. Several rounds on one
/// directory, so recovery of a recovered store is exercised too.
#[tokio::test]
async fn confirmed_messages_survive_kill_9() {
    if external() {
        return;
    }
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};
    let dir = temp_dir("crash");
    let mut expected: BTreeSet<u64> = BTreeSet::new();
    let mut next_id = 0u64;
    for round in 0..4 {
        let w = Warren::start(&dir, &[]).await;
        let (c, ch) = open(&w).await;
        ch.queue_declare(
            "crashq".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("q");
        ch.exchange_declare(
            "crashx".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("x");
        bind(&ch, "crashq", "crashx", "k", FieldTable::default()).await;
        // What survived the previous crash: all of `expected`, possibly plus unconfirmed extras.
        let present: BTreeSet<u64> = {
            let mut s = BTreeSet::new();
            let q = passive_queue(&ch, "crashq").await.expect("queue intact");
            for _ in 0..q {
                let m = ch
                    .basic_get("crashq".into(), BasicGetOptions::default())
                    .await
                    .expect("get")
                    .expect("m");
                s.insert(u64::from_be_bytes(
                    m.delivery.data[..8].try_into().expect("id"),
                ));
            }
            ch.basic_recover(BasicRecoverOptions { requeue: true })
                .await
                .expect("recover");
            s
        };
        let lost: Vec<_> = expected.difference(&present).collect();
        assert!(
            lost.is_empty(),
            "round {round}: lost confirmed messages {lost:?}"
        );
        expected = present;
        // A consumer settles what it sees; settled messages may disappear.
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        // Odd rounds consume on a connection of their own: its acks then race the
        // publisher's writes through the committer (they must never resurrect or lose one).
        let consumer_conn = if round % 2 == 1 {
            Some(
                Connection::connect(&w.url(), ConnectionProperties::default())
                    .await
                    .expect("consumer connection"),
            )
        } else {
            None
        };
        let cch = consumer_conn
            .as_ref()
            .unwrap_or(&c)
            .create_channel()
            .await
            .expect("consumer channel");
        // No prefetch limit: unsettled deliveries pile up unacked without stalling the rest.
        let mut consumer = consume(&cch, "crashq", "", false).await;
        let acked2 = acked.clone();
        let consume_task = tokio::spawn(async move {
            use futures_lite::StreamExt;
            while let Some(Ok(d)) = consumer.next().await {
                let id = u64::from_be_bytes(d.data[..8].try_into().expect("id"));
                // Settle half (ack, or reject without requeue); the other half stays unacked and
                // must come back after the kill. A settle may reach the broker even if the
                // kill interrupts its future, so the id counts as settled before it is sent.
                if id % 2 == 0 {
                    acked2.lock().expect("lock").insert(id);
                    let _ = if id % 4 == 0 {
                        d.acker.ack(BasicAckOptions::default()).await
                    } else {
                        d.acker.reject(BasicRejectOptions { requeue: false }).await
                    };
                }
            }
        });
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm");
        let kill_after = std::time::Duration::from_millis(150 + rand_ms(round) % 400);
        let deadline = tokio::time::Instant::now() + kill_after;
        let mut confirmed = Vec::new();
        let mut inflight = std::collections::VecDeque::new();
        while tokio::time::Instant::now() < deadline {
            let id = next_id;
            next_id += 1;
            let mut body = id.to_be_bytes().to_vec();
            body.extend_from_slice(&[7u8; 200]);
            match ch
                .basic_publish(
                    "crashx".into(),
                    "k".into(),
                    BasicPublishOptions::default(),
                    &body,
                    persistent(),
                )
                .await
            {
                Ok(p) => inflight.push_back((id, p)),
                Err(_) => break,
            }
            while inflight.len() > 64 {
                let Some((id, p)) = inflight.pop_front() else {
                    break;
                };
                if let Ok(conf) = p.await {
                    assert!(conf.is_ack());
                    confirmed.push(id);
                }
            }
        }
        w.kill9().await;
        consume_task.abort();
        for (id, p) in inflight {
            if let Ok(conf) = p.await {
                if conf.is_ack() {
                    confirmed.push(id);
                }
            }
        }
        let acked = acked.lock().expect("lock").clone();
        expected.extend(confirmed.iter().copied().filter(|id| !acked.contains(id)));
        expected.retain(|id| !acked.contains(id));
        assert!(
            !confirmed.is_empty(),
            "round {round}: nothing was confirmed before the kill"
        );
        eprintln!(
            "crash round {round}: {} confirmed, {} acked, {} expected after restart",
            confirmed.len(),
            acked.len(),
            expected.len()
        );
    }
    let w = Warren::start(&dir, &[]).await;
    let (_c, ch) = open(&w).await;
    let n = passive_queue(&ch, "crashq").await.expect("queue intact");
    let mut present = BTreeSet::new();
    for _ in 0..n {
        let m = ch
            .basic_get("crashq".into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
            .expect("m");
        assert!(m.delivery.redelivered);
        present.insert(u64::from_be_bytes(
            m.delivery.data[..8].try_into().expect("id"),
        ));
    }
    let lost: Vec<_> = expected.difference(&present).collect();
    assert!(lost.is_empty(), "final: lost confirmed messages {lost:?}");
    w.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn rand_ms(round: u64) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    t.wrapping_mul(31).wrapping_add(round * 97)
}

fn dir_size(path: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Push 20× the live set through a durable queue: the data directory must not keep growing
/// with what was already acked.
#[tokio::test]
async fn space_is_reclaimed_after_acks() {
    if external() {
        return;
    }
    const LIVE: usize = 1000;
    const SIZE: usize = 1024;
    let dir = temp_dir("space");
    let w = Warren::start(&dir, &[]).await;
    let (_c, ch) = open(&w).await;
    ch.queue_declare(
        "spaceq".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("q");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let body = vec![42u8; SIZE];
    let mut sent = 0;
    let mut taken = 0;
    while sent < 20 * LIVE {
        let mut pending = Vec::new();
        for _ in 0..LIVE / 4 {
            pending.push(
                ch.basic_publish(
                    "".into(),
                    "spaceq".into(),
                    BasicPublishOptions::default(),
                    &body,
                    persistent(),
                )
                .await
                .expect("pub"),
            );
            sent += 1;
        }
        for p in pending {
            assert!(p.await.expect("confirm").is_ack());
        }
        // Keep about LIVE messages in the queue; ack the rest.
        while sent - taken > LIVE {
            let m = ch
                .basic_get("spaceq".into(), BasicGetOptions::default())
                .await
                .expect("get")
                .expect("m");
            m.acker.ack(BasicAckOptions::default()).await.expect("ack");
            taken += 1;
        }
    }
    // Let the committer and sled's background flusher settle.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let used = dir_size(&dir);
    let live_bytes = (LIVE * SIZE) as u64;
    eprintln!(
        "space: {used} bytes on disk for {live_bytes} live bytes after pushing {} bytes",
        20 * live_bytes
    );
    assert!(
        used < 4 * live_bytes + 16 * 1024 * 1024,
        "data directory holds {used} bytes"
    );
    w.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn committed_transactions_survive_restart() {
    if external() {
        return;
    }
    let dir = temp_dir("txrestart");
    let w = Warren::start(&dir, &[]).await;
    {
        let (_c, ch) = open(&w).await;
        ch.queue_declare(
            "txq".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("q");
        ch.tx_select().await.expect("select");
        publish_props(&ch, "", "txq", b"committed", persistent()).await;
        ch.tx_commit().await.expect("commit");
        publish_props(&ch, "", "txq", b"rolled back", persistent()).await;
        ch.tx_rollback().await.expect("rollback");
        w.kill9().await;
    }
    let w = Warren::start(&dir, &[]).await;
    let (_c, ch) = open(&w).await;
    assert_eq!(drain(&ch, "txq").await, vec!["committed"]);
    w.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn dead_letters_and_delayed_messages_survive_restart() {
    if external() {
        return;
    }
    let dir = temp_dir("dlxrestart");
    let w = Warren::start(&dir, &[]).await;
    {
        let (_c, ch) = open(&w).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm");
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare("dl-target".into(), durable, FieldTable::default())
            .await
            .expect("dlq");
        ch.queue_declare(
            "dl-source".into(),
            durable,
            table(&[
                ("x-dead-letter-exchange", s("")),
                ("x-dead-letter-routing-key", s("dl-target")),
            ]),
        )
        .await
        .expect("src");
        ch.basic_publish(
            "".into(),
            "dl-source".into(),
            BasicPublishOptions::default(),
            b"dead",
            persistent(),
        )
        .await
        .expect("pub")
        .await
        .expect("confirm");
        let m = ch
            .basic_get("dl-source".into(), BasicGetOptions::default())
            .await
            .expect("get")
            .expect("m");
        ch.basic_reject(m.delivery_tag, BasicRejectOptions { requeue: false })
            .await
            .expect("reject");
        ch.exchange_declare(
            "dx-delay".into(),
            ExchangeKind::Custom("x-delayed-message".into()),
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            table(&[("x-delayed-type", s("fanout"))]),
        )
        .await
        .expect("delayed");
        ch.queue_declare("delay-target".into(), durable, FieldTable::default())
            .await
            .expect("target");
        bind(&ch, "delay-target", "dx-delay", "", FieldTable::default()).await;
        let props = persistent().with_headers(table(&[("x-delay", AMQPValue::LongInt(1500))]));
        ch.basic_publish(
            "dx-delay".into(),
            "".into(),
            BasicPublishOptions::default(),
            b"delayed",
            props,
        )
        .await
        .expect("pub")
        .await
        .expect("confirm");
        // A queue round trip makes sure the reject was processed before the kill.
        passive_queue(&ch, "dl-target").await.expect("dlq");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        w.kill9().await;
    }
    let w = Warren::start(&dir, &[]).await;
    let (_c, ch) = open(&w).await;
    assert_eq!(
        drain(&ch, "dl-source").await,
        Vec::<String>::new(),
        "not in two places"
    );
    assert_eq!(drain(&ch, "dl-target").await, vec!["dead"]);
    let mut got = Vec::new();
    for _ in 0..100 {
        got = drain(&ch, "delay-target").await;
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        got,
        vec!["delayed"],
        "the delayed message is routed after the restart"
    );
    w.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn corrupt_store_stops_the_broker_and_keeps_the_files() {
    if external() {
        return;
    }
    let dir = temp_dir("corrupt");
    std::fs::create_dir_all(&dir).expect("dir");
    let junk: Vec<u8> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("db"), &junk).expect("db");
    std::fs::write(dir.join("conf"), &junk[..100]).expect("conf");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .args([
            "--port",
            &crate::process::free_port().to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .expect("run warren");
    assert!(!out.status.success(), "a corrupt store must not start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&dir.display().to_string()),
        "error names the directory: {err}"
    );
    assert_eq!(
        std::fs::read(dir.join("db")).expect("db kept"),
        junk,
        "never a silent reset"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_embedded_broker_restarts_in_the_same_process() {
    if external() {
        return;
    }
    let dir = temp_dir("inproc");
    let config = || warren::Config {
        port: 0,
        data_dir: Some(dir.clone()),
        ..Default::default()
    };
    for round in 0..3u32 {
        let b = warren::start(config())
            .await
            .unwrap_or_else(|e| panic!("start {round} on the same directory: {e}"));
        let (_c, ch) = channel_at(&b.url()).await;
        ch.queue_declare(
            "kept".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare");
        assert_eq!(
            ops::message_count(&ch, "kept").await,
            round,
            "round {round}: what earlier rounds confirmed is there"
        );
        ch.confirm_select(Default::default())
            .await
            .expect("confirms");
        ch.basic_publish(
            "".into(),
            "kept".into(),
            Default::default(),
            b"m",
            persistent(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirmed");
        b.stop().await.expect("stopped with everything durable");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
