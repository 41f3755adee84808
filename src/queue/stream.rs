//! Stream queues (RabbitMQ's AMQP 0-9-1 interface to streams): every message appended to a
//! log (`store::log`) at the next offset, read by each consumer from its own position;
//! acks only return credit, nothing is removed but by retention.
//!
//! The recent end of the log stays in memory (`Tail`: everything not yet written, and a
//! window beyond), so consumers keeping up never touch the disk; a consumer behind reads
//! batches from the segments into its own small read-ahead, never the whole log.

use super::*;
use crate::store::log::{Cursor, Log};
use amq_protocol::types::AMQPValue;
use std::collections::VecDeque;

/// The header each delivery carries, and the consumer argument naming where to start.
pub const OFFSET_HEADER: &str = "x-stream-offset";
/// The publish header with a message's filter value (RabbitMQ 3.13 stream filtering).
pub const FILTER_VALUE_HEADER: &str = "x-stream-filter-value";

/// Records a filtered consumer may pass over in one search (see `next_record`).
const SCAN_LIMIT: usize = 16_384;

/// Records a consumer behind reads from disk at once (and about this many bytes).
const READ_AHEAD_RECORDS: usize = 256;
const READ_AHEAD_BYTES: usize = 1 << 20;

/// The smallest segment Warren makes, whatever `x-stream-max-segment-size-bytes` says: each
/// segment is a file and an entry in memory, and one per message would cost both without end.
pub const MIN_SEGMENT_BYTES: u64 = 4096;

/// A stream's retention and segment size from its arguments in force.
pub fn limits(args: &QueueArgs) -> crate::store::log::Limits {
    crate::store::log::Limits {
        segment_bytes: args
            .segment_bytes
            .unwrap_or(crate::store::log::DEFAULT_SEGMENT_BYTES)
            .max(MIN_SEGMENT_BYTES),
        max_bytes: args.max_length_bytes,
        max_age_ms: args.max_age_ms,
    }
}

/// Where a consumer starts (`x-stream-offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    First,
    /// The start of the last chunk written.
    Last,
    Next,
    Offset(u64),
    /// The first message appended at or after this time (ms).
    Timestamp(u64),
    /// The first message appended in the last this many ms.
    Ago(u64),
}

/// `x-stream-filter` / `x-stream-match-unfiltered`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub values: Vec<String>,
    pub match_unfiltered: bool,
}

impl Filter {
    fn admits(f: Option<&Filter>, value: Option<&str>) -> bool {
        match (f, value) {
            (None, _) => true,
            (Some(f), None) => f.match_unfiltered,
            (Some(f), Some(v)) => f.values.iter().any(|x| x == v),
        }
    }
}

/// A stream consumer's reading state (kept in its `Consumer`).
#[derive(Debug)]
pub struct Reading {
    start: Start,
    filter: Option<Filter>,
    /// The next offset to look at (behind `ahead`).
    pos: u64,
    cursor: Cursor,
    /// Records read from disk and not yet delivered.
    ahead: VecDeque<(u64, Arc<Message>, Option<Box<str>>)>,
}

impl Reading {
    pub fn new(start: Start, filter: Option<Filter>) -> Self {
        Reading {
            start,
            filter,
            pos: 0,
            cursor: Cursor::default(),
            ahead: VecDeque::new(),
        }
    }
}

/// The consumer arguments of a stream consumer, checked as RabbitMQ does.
pub fn consumer_args(table: &FieldTable, queue: &str, vhost: &str) -> AmqpResult<Reading> {
    let invalid = |key: &str, v: &AMQPValue| {
        AmqpError::precondition_failed(format!(
            "invalid arg '{key}' for queue '{queue}' in vhost '{vhost}': \
             {{invalid_stream_offset_arg,{{{},{}}}}}",
            crate::args::type_name(v),
            match crate::args::as_str(v) {
                Some(s) => format!("<<\"{s}\">>"),
                None => crate::args::render(v),
            }
        ))
    };
    let start = match crate::args::get(table, OFFSET_HEADER) {
        None => Start::Next,
        Some(v @ (AMQPValue::LongString(_) | AMQPValue::ShortString(_))) => {
            match crate::args::as_str(v).as_deref() {
                Some("first") => Start::First,
                Some("last") => Start::Last,
                Some("next") => Start::Next,
                Some(s) => Start::Ago(
                    crate::queue::args::parse_age(s).ok_or_else(|| invalid(OFFSET_HEADER, v))?,
                ),
                None => return Err(invalid(OFFSET_HEADER, v)),
            }
        }
        Some(AMQPValue::Timestamp(t)) => Start::Timestamp(t.saturating_mul(1000)),
        Some(v) => match crate::args::as_i64(v) {
            Some(n) => Start::Offset(u64::try_from(n).unwrap_or(0)),
            None => return Err(invalid(OFFSET_HEADER, v)),
        },
    };
    let wrong = |key: &str, v: &AMQPValue| {
        AmqpError::precondition_failed(format!(
            "invalid arg '{key}' for queue '{queue}' in vhost '{vhost}': {{unacceptable_type,{}}}",
            crate::args::type_name(v)
        ))
    };
    let values = match crate::args::get(table, "x-stream-filter") {
        None => None,
        Some(AMQPValue::FieldArray(a)) => Some(
            a.as_slice()
                .iter()
                .map(|v| crate::args::as_str(v).ok_or_else(|| wrong("x-stream-filter", v)))
                .collect::<AmqpResult<Vec<_>>>()?,
        ),
        Some(v) => Some(vec![
            crate::args::as_str(v).ok_or_else(|| wrong("x-stream-filter", v))?
        ]),
    };
    let match_unfiltered = match crate::args::get(table, "x-stream-match-unfiltered") {
        None => false,
        Some(AMQPValue::Boolean(b)) => *b,
        Some(v) => return Err(wrong("x-stream-match-unfiltered", v)),
    };
    let filter = values.map(|values| Filter {
        values,
        match_unfiltered,
    });
    Ok(Reading::new(start, filter))
}

struct TailEntry {
    message: Arc<Message>,
    filter: Option<Box<str>>,
    bytes: u64,
}

/// The newest messages of the log, in memory: all not yet written, and up to a window more.
#[derive(Default)]
pub(super) struct Tail {
    first: u64,
    entries: VecDeque<TailEntry>,
    bytes: u64,
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tail({}+{})", self.first, self.entries.len())
    }
}

impl Tail {
    pub(super) fn starting_at(first: u64) -> Self {
        Tail {
            first,
            ..Default::default()
        }
    }

    fn get(&self, offset: u64) -> Option<&TailEntry> {
        self.entries
            .get(usize::try_from(offset.checked_sub(self.first)?).ok()?)
    }

    /// Keep at most the window, never letting go of what is not written yet.
    fn trim(&mut self, written: u64, paging: Paging) {
        while self.entries.len() > paging.ram_messages || self.bytes > paging.ram_bytes {
            if self.first >= written {
                return;
            }
            let Some(e) = self.entries.pop_front() else {
                return;
            };
            self.bytes -= e.bytes;
            self.first += 1;
        }
    }
}

impl Queue {
    pub fn is_stream(&self) -> bool {
        self.config.log.is_some()
    }

    /// What streams refuse (basic.get, queue.purge), with RabbitMQ's 540.
    pub fn refuse_on_stream(&self, what: &str) -> AmqpResult<()> {
        if !self.is_stream() {
            return Ok(());
        }
        Err(AmqpError::not_implemented(format!(
            "{what} not supported by stream queues queue '{}' in vhost '{}'",
            self.config.name, self.config.vhost
        )))
    }

    /// The log's figures, for the management API (None: not a stream).
    pub fn stream_stats(&self) -> Option<crate::store::log::LogStats> {
        self.config.log.as_ref().map(|l| l.stats())
    }

    /// Append to the log and hand to consumers waiting at the end. The message is stored with
    /// its offset in the `x-stream-offset` header, so every delivery shares one encoding.
    pub(super) fn publish_stream(
        self: &Arc<Self>,
        st: &mut State,
        log: &Arc<Log>,
        message: &Message,
        fx: &mut Effects,
    ) {
        let offset = log.next_offset();
        let mut props = message.properties();
        let mut headers = props.headers().clone().unwrap_or_default();
        // The record keeps at most 64 KiB of a filter value; the tail keeps the same.
        let filter: Option<Box<str>> = headers
            .inner()
            .get(FILTER_VALUE_HEADER)
            .and_then(crate::args::as_str)
            .map(|v| {
                let mut end = v.len().min(usize::from(u16::MAX));
                while !v.is_char_boundary(end) {
                    end -= 1;
                }
                v[..end].into()
            });
        let stored_offset = i64::try_from(offset).unwrap_or(i64::MAX);
        headers.insert(OFFSET_HEADER.into(), AMQPValue::LongLongInt(stored_offset));
        props = props.with_headers(headers);
        let stored = Arc::new(Message::new(
            message.exchange.clone(),
            message.routing_key.clone(),
            props,
            message.body.clone(),
        ));
        let record = crate::store::record::encode(&stored);
        let (at, bytes) = log.append(self.now(), filter.as_deref(), &record);
        debug_assert_eq!(at, offset);
        fx.ops.push(Op::StreamFlush(log.clone(), bytes));
        let body = stored.body.len() as u64;
        if st.tail.entries.is_empty() {
            st.tail.first = offset;
        }
        st.tail.bytes += body;
        st.tail.entries.push_back(TailEntry {
            message: stored,
            filter,
            bytes: body,
        });
        st.counts.add(crate::stats::Stat::Publish, 1);
        self.dispatch_stream(st, log);
        st.tail.trim(log.written(), self.stream_window());
    }

    fn stream_window(&self) -> Paging {
        self.config
            .page_to
            .as_ref()
            .map_or_else(Paging::default, |p| p.paging)
    }

    /// A new consumer's first offset.
    pub(super) fn stream_start(&self, log: &Log, start: Start) -> u64 {
        let first = log.first_offset();
        let seek = |ts: u64| match log.offset_at(ts) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "reading a stream for a timestamp; starting at next");
                log.next_offset()
            }
        };
        match start {
            Start::First => first,
            Start::Last => log.last_chunk().max(first),
            Start::Next => log.next_offset(),
            Start::Offset(n) => n.max(first),
            Start::Timestamp(t) => seek(t),
            Start::Ago(ms) => seek(self.now().saturating_sub(ms)),
        }
    }

    /// Deliver to each stream consumer from its own position while it has credit.
    pub(super) fn dispatch_stream(self: &Arc<Self>, st: &mut State, log: &Log) {
        let next = log.next_offset();
        let mut i = 0;
        while i < st.consumers.len() {
            let mut gone = false;
            loop {
                let State {
                    consumers, tail, ..
                } = &mut *st;
                let c = &mut consumers[i];
                let Some(r) = c.stream.as_ref() else {
                    break;
                };
                if (r.ahead.is_empty() && r.pos >= next) || !c.try_acquire() {
                    break;
                }
                let found = c
                    .stream
                    .as_mut()
                    .and_then(|r| next_record(r, tail, log, next));
                let Some((offset, message)) = found else {
                    c.release();
                    break;
                };
                let delivery = Delivery {
                    channel: c.channel,
                    consumer_tag: c.tag.clone(),
                    queue: self.clone(),
                    entry: QueuedMessage {
                        seq: offset,
                        message,
                        redelivered: false,
                        expires_at: None,
                        delivery_count: 0,
                    },
                    no_ack: false,
                    credit: c.credit.clone(),
                };
                if c.outbox.send(Outbound::Deliver(delivery)).is_err() {
                    gone = true;
                    break;
                }
                self.outstanding.fetch_add(1, Ordering::Relaxed);
                st.counts.add(crate::stats::Stat::Deliver, 1);
            }
            if gone {
                st.consumers.remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// The rates tick: retention by age (on the broker's clock) and size, the tail's window
    /// once the committer wrote what it held, and filtered consumers' searches resumed.
    pub(super) fn stream_tick(self: &Arc<Self>, st: &mut State, log: &Log) {
        log.retain(Some(self.now()));
        st.tail.trim(log.written(), self.stream_window());
        self.dispatch_stream(st, log);
    }
}

/// The next record for this consumer that its filter admits: from its read-ahead, the
/// tail, or a batch read from disk. A filter that skips `SCAN_LIMIT` records in a row stops
/// the search (under the queue's lock) until the next publish, ack or tick.
fn next_record(r: &mut Reading, tail: &Tail, log: &Log, next: u64) -> Option<(u64, Arc<Message>)> {
    let mut skipped = 0;
    loop {
        if skipped >= SCAN_LIMIT {
            return None;
        }
        if let Some((offset, m, value)) = r.ahead.pop_front() {
            if Filter::admits(r.filter.as_ref(), value.as_deref()) {
                return Some((offset, m));
            }
            skipped += 1;
            continue;
        }
        if r.pos >= next {
            return None;
        }
        if let Some(e) = tail.get(r.pos) {
            let offset = r.pos;
            r.pos += 1;
            if Filter::admits(r.filter.as_ref(), e.filter.as_deref()) {
                return Some((offset, e.message.clone()));
            }
            skipped += 1;
            continue;
        }
        if r.cursor.offset != r.pos {
            r.cursor = Cursor::at(r.pos);
        }
        let records = match log.read(&mut r.cursor, READ_AHEAD_RECORDS, READ_AHEAD_BYTES) {
            Ok(records) => records,
            Err(e) => {
                tracing::error!(error = %e, "reading a stream segment");
                return None;
            }
        };
        let moved = r.cursor.offset != r.pos;
        r.pos = r.cursor.offset;
        if records.is_empty() && !moved {
            return None;
        }
        for rec in records {
            let Some(m) = crate::store::record::decode(&rec.message).and_then(|d| {
                Message::from_raw(d.exchange, d.routing_key, &d.raw_properties, d.body)
            }) else {
                tracing::warn!(offset = rec.offset, "undecodable stream record skipped");
                continue;
            };
            r.ahead.push_back((rec.offset, Arc::new(m), rec.filter));
        }
    }
}

impl Reading {
    /// Resolve where this consumer starts (once, when it is added).
    pub(super) fn begin(&mut self, pos: u64) {
        self.pos = pos;
        self.cursor = Cursor::at(pos);
        self.ahead.clear();
    }

    pub(super) fn start(&self) -> Start {
        self.start
    }
}
