//! Model-based routing check: random topologies (direct, fanout, topic and headers exchanges,
//! exchange-to-exchange bindings, alternate exchanges) and random publishes; a plain model in
//! this file predicts which queues get which messages in which order, and the broker must agree.
//! Runs against RabbitMQ too (WARREN_TEST_AMQP_URL), which proves the model.
//! WARREN_MODEL_CASES sets the number of cases (CI runs a few dozen).

use crate::common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, ExchangeKind};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug)]
enum Kind {
    Direct,
    Fanout,
    Topic,
    /// x-match all (true) or any.
    Headers,
}

#[derive(Clone, Debug)]
struct Binding {
    key: String,
    /// Headers bindings: x-match all?, and the (name, value) pairs to match.
    all: bool,
    pairs: Vec<(String, String)>,
    to_queue: bool,
    dest: usize,
}

struct Topology {
    kinds: Vec<Kind>,
    alternate: Vec<Option<usize>>,
    bindings: Vec<Vec<Binding>>,
    queues: usize,
}

const WORDS: &[&str] = &["a", "b", "c"];

fn key(rng: &mut StdRng) -> String {
    let n = rng.gen_range(1..=3);
    (0..n)
        .map(|_| WORDS[rng.gen_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(".")
}

fn pattern(rng: &mut StdRng) -> String {
    let n = rng.gen_range(1..=3);
    (0..n)
        .map(|_| match rng.gen_range(0..5) {
            0 => "*",
            1 => "#",
            i => WORDS[(i - 2) % WORDS.len()],
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn headers(rng: &mut StdRng) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for h in ["h1", "h2"] {
        if rng.gen_bool(0.6) {
            out.push((h.to_string(), ["x", "y"][rng.gen_range(0..2)].to_string()));
        }
    }
    out
}

fn topic_matches(pattern: &str, key: &str) -> bool {
    let words = |s: &str| -> Vec<String> {
        if s.is_empty() {
            Vec::new()
        } else {
            s.split('.').map(str::to_string).collect()
        }
    };
    let (p, k) = (words(pattern), words(key));
    let mut m = vec![vec![false; k.len() + 1]; p.len() + 1];
    m[0][0] = true;
    for i in 1..=p.len() {
        for j in 0..=k.len() {
            m[i][j] = match p[i - 1].as_str() {
                "#" => m[i - 1][j] || (j > 0 && m[i][j - 1]),
                "*" => j > 0 && m[i - 1][j - 1],
                w => j > 0 && w == k[j - 1] && m[i - 1][j - 1],
            };
        }
    }
    m[p.len()][k.len()]
}

impl Topology {
    fn random(rng: &mut StdRng) -> Topology {
        let n_x = rng.gen_range(1..=4);
        let queues = rng.gen_range(1..=4);
        let kinds: Vec<Kind> = (0..n_x)
            .map(|_| match rng.gen_range(0..4) {
                0 => Kind::Direct,
                1 => Kind::Fanout,
                2 => Kind::Topic,
                _ => Kind::Headers,
            })
            .collect();
        let alternate = (0..n_x)
            .map(|i| (rng.gen_bool(0.25) && n_x > 1).then(|| (i + rng.gen_range(1..n_x)) % n_x))
            .collect();
        let bindings = (0..n_x)
            .map(|i| {
                (0..rng.gen_range(0..=4))
                    .map(|_| {
                        let to_queue = n_x == 1 || rng.gen_bool(0.75);
                        let dest = if to_queue {
                            rng.gen_range(0..queues)
                        } else {
                            (i + rng.gen_range(1..n_x)) % n_x
                        };
                        let key = match kinds[i] {
                            Kind::Topic => pattern(rng),
                            _ => key(rng),
                        };
                        Binding {
                            key,
                            all: rng.gen_bool(0.5),
                            pairs: headers(rng),
                            to_queue,
                            dest,
                        }
                    })
                    .collect()
            })
            .collect();
        Topology {
            kinds,
            alternate,
            bindings,
            queues,
        }
    }

    fn binding_matches(&self, x: usize, b: &Binding, key: &str, hdrs: &[(String, String)]) -> bool {
        match self.kinds[x] {
            Kind::Direct => b.key == key,
            Kind::Fanout => true,
            Kind::Topic => topic_matches(&b.key, key),
            Kind::Headers => {
                let has =
                    |(n, v): &(String, String)| hdrs.iter().any(|(hn, hv)| hn == n && hv == v);
                if b.all {
                    b.pairs.iter().all(has)
                } else {
                    b.pairs.iter().any(has)
                }
            }
        }
    }

    /// The queues a publish to exchange `x` reaches (RabbitMQ: each queue once, exchanges
    /// visited once, an alternate exchange when the exchange itself matches nothing).
    fn route(&self, x: usize, key: &str, hdrs: &[(String, String)]) -> BTreeSet<usize> {
        let mut out = BTreeSet::new();
        let mut visited = BTreeSet::new();
        let mut pending = vec![x];
        while let Some(x) = pending.pop() {
            if !visited.insert(x) {
                continue;
            }
            let mut any = false;
            for b in &self.bindings[x] {
                if self.binding_matches(x, b, key, hdrs) {
                    any = true;
                    if b.to_queue {
                        out.insert(b.dest);
                    } else {
                        pending.push(b.dest);
                    }
                }
            }
            if !any {
                if let Some(ae) = self.alternate[x] {
                    pending.push(ae);
                }
            }
        }
        out
    }
}

fn lstr(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

async fn run_case(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let t = Topology::random(&mut rng);
    let (c, ch) = channel().await;
    let tag = uniq(&format!("model{seed}"));
    let xname = |i: usize| format!("{tag}-x{i}");
    let qname = |i: usize| format!("{tag}-q{i}");
    for (i, kind) in t.kinds.iter().enumerate() {
        let mut args = FieldTable::default();
        if let Some(ae) = t.alternate[i] {
            args.insert("alternate-exchange".into(), lstr(&xname(ae)));
        }
        let k = match kind {
            Kind::Direct => ExchangeKind::Direct,
            Kind::Fanout => ExchangeKind::Fanout,
            Kind::Topic => ExchangeKind::Topic,
            Kind::Headers => ExchangeKind::Headers,
        };
        ch.exchange_declare(
            xname(i).as_str().into(),
            k,
            ExchangeDeclareOptions::default(),
            args,
        )
        .await
        .expect("exchange");
    }
    for q in 0..t.queues {
        ch.queue_declare(
            qname(q).as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("queue");
    }
    for (x, bs) in t.bindings.iter().enumerate() {
        for b in bs {
            let mut args = FieldTable::default();
            if matches!(t.kinds[x], Kind::Headers) {
                args.insert("x-match".into(), lstr(if b.all { "all" } else { "any" }));
                for (n, v) in &b.pairs {
                    args.insert(n.as_str().into(), lstr(v));
                }
            }
            if b.to_queue {
                ch.queue_bind(
                    qname(b.dest).as_str().into(),
                    xname(x).as_str().into(),
                    b.key.as_str().into(),
                    QueueBindOptions::default(),
                    args,
                )
                .await
                .expect("bind");
            } else {
                ch.exchange_bind(
                    xname(b.dest).as_str().into(),
                    xname(x).as_str().into(),
                    b.key.as_str().into(),
                    ExchangeBindOptions::default(),
                    args,
                )
                .await
                .expect("e2e bind");
            }
        }
    }
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let mut want: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    for id in 0..20u32 {
        let x = rng.gen_range(0..t.kinds.len());
        let k = key(&mut rng);
        let hdrs = headers(&mut rng);
        for q in t.route(x, &k, &hdrs) {
            want.entry(q).or_default().push(id);
        }
        let mut table = FieldTable::default();
        for (n, v) in &hdrs {
            table.insert(n.as_str().into(), lstr(v));
        }
        ch.basic_publish(
            xname(x).as_str().into(),
            k.as_str().into(),
            BasicPublishOptions::default(),
            &id.to_be_bytes(),
            BasicProperties::default().with_headers(table),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
    for q in 0..t.queues {
        let mut got = Vec::new();
        while let Some(m) = ch
            .basic_get(qname(q).as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
        {
            let b: [u8; 4] = m.delivery.data[..4].try_into().expect("id");
            got.push(u32::from_be_bytes(b));
        }
        let expected = want.remove(&q).unwrap_or_default();
        assert_eq!(
            got, expected,
            "seed {seed}: queue q{q} (exchanges {:?}, alternates {:?}, bindings {:?})",
            t.kinds, t.alternate, t.bindings
        );
        ch.queue_delete(qname(q).as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("delete queue");
    }
    for i in 0..t.kinds.len() {
        ch.exchange_delete(xname(i).as_str().into(), ExchangeDeleteOptions::default())
            .await
            .expect("delete exchange");
    }
    let _ = c.close(200, "".into()).await;
}

#[tokio::test]
async fn routing_agrees_with_the_model() {
    let cases: u64 = std::env::var("WARREN_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    for seed in 0..cases {
        run_case(seed).await;
    }
}
