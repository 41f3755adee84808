//! Model-based routing check: random topologies (direct, fanout, topic and headers exchanges,
//! exchange-to-exchange bindings, alternate exchanges; queues with x-max-length and each
//! x-overflow, x-message-ttl 0, dead-letter exchanges and routing keys, dead-letter cycles) and
//! random publishes; a plain model in this file predicts which queues get which messages in
//! which order, and the broker must agree.
//! What one publish sets off (its copies, and the dead letters they cause) reaches queues in no
//! fixed order on RabbitMQ, so within one publish's group the order is not compared; topologies
//! where that order would change the outcome (a limited queue reached twice by one publish)
//! are drawn again.
//! Runs against RabbitMQ too (WARREN_TEST_AMQP_URL), which proves the model.
//! WARREN_MODEL_CASES sets the number of cases (200 by default, in CI).

use crate::common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, ExchangeKind};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::{BTreeSet, VecDeque};

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

#[derive(Clone, Copy, Debug, PartialEq)]
enum Overflow {
    DropHead,
    RejectPublish,
    RejectPublishDlx,
}

/// A queue's arguments: a length limit (1 or 2) and what happens past it, or TTL 0; where its
/// dead letters go.
#[derive(Clone, Debug, Default)]
struct QArgs {
    max_len: Option<(usize, Option<Overflow>)>,
    ttl0: bool,
    dlx: Option<usize>,
    dlrk: Option<String>,
}

struct Topology {
    kinds: Vec<Kind>,
    alternate: Vec<Option<usize>>,
    bindings: Vec<Vec<Binding>>,
    queues: usize,
    qargs: Vec<QArgs>,
}

/// One publish: exchange, routing key, headers.
type Publish = (usize, String, Vec<(String, String)>);

/// A message in the model: its id, and the queues in its x-death (dead-letter cycles).
#[derive(Clone)]
struct Copy {
    id: u32,
    /// The publish that put this copy where it is (a dead letter moves with a later one).
    cause: u32,
    key: String,
    hdrs: Vec<(String, String)>,
    deaths: Vec<usize>,
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
        let qargs = (0..queues)
            .map(|_| {
                let mut a = QArgs::default();
                match rng.gen_range(0..4) {
                    0 => {
                        let overflow = match rng.gen_range(0..4) {
                            0 => None,
                            1 => Some(Overflow::DropHead),
                            2 => Some(Overflow::RejectPublish),
                            _ => Some(Overflow::RejectPublishDlx),
                        };
                        a.max_len = Some((rng.gen_range(1..=2), overflow));
                    }
                    1 => a.ttl0 = true,
                    _ => {}
                }
                if rng.gen_bool(0.5) {
                    a.dlx = Some(rng.gen_range(0..n_x));
                    if rng.gen_bool(0.4) {
                        a.dlrk = Some(key(rng));
                    }
                }
                a
            })
            .collect();
        Topology {
            kinds,
            alternate,
            bindings,
            queues,
            qargs,
        }
    }

    /// Run the publishes through the model: per queue, its messages in order, each with the
    /// publish that put it there. None when an outcome would depend on arrival order.
    fn simulate(&self, publishes: &[Publish]) -> Option<Vec<Vec<(u32, u32)>>> {
        let mut queues: Vec<VecDeque<Copy>> = vec![VecDeque::new(); self.queues];
        for (id, (x, key, hdrs)) in publishes.iter().enumerate() {
            let mut arrivals = vec![0usize; self.queues];
            let mut work = vec![(
                *x,
                Copy {
                    id: id as u32,
                    cause: id as u32,
                    key: key.clone(),
                    hdrs: hdrs.clone(),
                    deaths: Vec::new(),
                },
            )];
            while let Some((x, m)) = work.pop() {
                for q in self.route(x, &m.key, &m.hdrs) {
                    if m.deaths.contains(&q) {
                        continue; // a dead-letter cycle without a rejection: dropped
                    }
                    arrivals[q] += 1;
                    if arrivals[q] > 1 && self.qargs[q].max_len.is_some() {
                        return None;
                    }
                    let mut c = m.clone();
                    c.cause = id as u32;
                    self.enqueue(q, c, &mut queues, &mut work);
                }
            }
        }
        Some(
            queues
                .into_iter()
                .map(|q| q.into_iter().map(|c| (c.cause, c.id)).collect())
                .collect(),
        )
    }

    fn enqueue(
        &self,
        q: usize,
        m: Copy,
        queues: &mut [VecDeque<Copy>],
        work: &mut Vec<(usize, Copy)>,
    ) {
        let a = &self.qargs[q];
        if a.ttl0 {
            // No consumers: TTL 0 expires it at once.
            self.dead_letter(q, m, work);
            return;
        }
        if let Some((max, overflow)) = a.max_len {
            if queues[q].len() >= max {
                match overflow.unwrap_or(Overflow::DropHead) {
                    Overflow::DropHead => {
                        if let Some(head) = queues[q].pop_front() {
                            self.dead_letter(q, head, work);
                        }
                    }
                    Overflow::RejectPublish => return,
                    Overflow::RejectPublishDlx => {
                        self.dead_letter(q, m, work);
                        return;
                    }
                }
            }
        }
        queues[q].push_back(m);
    }

    fn dead_letter(&self, q: usize, mut m: Copy, work: &mut Vec<(usize, Copy)>) {
        let a = &self.qargs[q];
        let Some(dlx) = a.dlx else {
            return;
        };
        m.deaths.push(q);
        if let Some(k) = &a.dlrk {
            m.key = k.clone();
        }
        work.push((dlx, m));
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

/// The broker's queue agrees with the model: the same messages, in the model's order across
/// publishes; within what one publish set off, in any order.
fn agrees(got: &[u32], want: &[(u32, u32)]) -> bool {
    if got.len() != want.len() {
        return false;
    }
    let mut i = 0;
    while i < want.len() {
        let end = i + want[i..]
            .iter()
            .take_while(|(c, _)| *c == want[i].0)
            .count();
        let mut a: Vec<u32> = got[i..end].to_vec();
        let mut b: Vec<u32> = want[i..end].iter().map(|(_, id)| *id).collect();
        a.sort_unstable();
        b.sort_unstable();
        if a != b {
            return false;
        }
        i = end;
    }
    true
}

fn lstr(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

async fn run_case(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (t, publishes, want) = loop {
        let t = Topology::random(&mut rng);
        let publishes: Vec<Publish> = (0..20)
            .map(|_| {
                let x = rng.gen_range(0..t.kinds.len());
                (x, key(&mut rng), headers(&mut rng))
            })
            .collect();
        if let Some(want) = t.simulate(&publishes) {
            break (t, publishes, want);
        }
    };
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
        let a = &t.qargs[q];
        let mut args = FieldTable::default();
        if let Some((max, overflow)) = a.max_len {
            args.insert("x-max-length".into(), AMQPValue::LongInt(max as i32));
            if let Some(o) = overflow {
                let o = match o {
                    Overflow::DropHead => "drop-head",
                    Overflow::RejectPublish => "reject-publish",
                    Overflow::RejectPublishDlx => "reject-publish-dlx",
                };
                args.insert("x-overflow".into(), lstr(o));
            }
        }
        if a.ttl0 {
            args.insert("x-message-ttl".into(), AMQPValue::LongInt(0));
        }
        if let Some(dlx) = a.dlx {
            args.insert("x-dead-letter-exchange".into(), lstr(&xname(dlx)));
        }
        if let Some(k) = &a.dlrk {
            args.insert("x-dead-letter-routing-key".into(), lstr(k));
        }
        ch.queue_declare(
            qname(q).as_str().into(),
            QueueDeclareOptions::default(),
            args,
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
    for (id, (x, k, hdrs)) in publishes.iter().enumerate() {
        let mut table = FieldTable::default();
        for (n, v) in hdrs {
            table.insert(n.as_str().into(), lstr(v));
        }
        // Confirmed (or nacked by a full queue) before the next: what one publish sets off is
        // done before the next begins, on both brokers.
        ch.basic_publish(
            xname(*x).as_str().into(),
            k.as_str().into(),
            BasicPublishOptions::default(),
            &(id as u32).to_be_bytes(),
            BasicProperties::default().with_headers(table),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
    for (q, want) in want.iter().enumerate() {
        let mut got = Vec::new();
        while let Some(m) = ch
            .basic_get(qname(q).as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
        {
            let b: [u8; 4] = m.delivery.data[..4].try_into().expect("id");
            got.push(u32::from_be_bytes(b));
        }
        assert!(
            agrees(&got, want),
            "seed {seed}: queue q{q} got {got:?}, model {:?} (cause, id) \
             (exchanges {:?}, alternates {:?}, bindings {:?}, queues {:?}, publishes {:?})",
            want,
            t.kinds,
            t.alternate,
            t.bindings,
            t.qargs,
            publishes
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
        .unwrap_or(200);
    for seed in 0..cases {
        run_case(seed).await;
    }
}
