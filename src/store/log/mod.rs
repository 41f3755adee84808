//! A stream queue's log: messages appended in offset order to segment files under the data
//! directory (`streams/<id>/<first offset>.seg`), never one store key per message.
//!
//! Appends (the publish path, under the stream queue's lock) only encode the record into a
//! pending buffer. The committer thread writes that buffer to the active segment as one chunk
//! and syncs it (`flush`, in the same group commit as the store's batch), so a publisher's
//! confirm goes out only for records on disk. Segments roll at their size limit; a sealed
//! segment gets an index file (a sparse map of offsets and timestamps to file positions), so
//! that boot reads only the active segment whole, checking each record's crc and cutting a
//! torn tail. Retention (`x-max-length-bytes`, `x-max-age`) drops whole sealed segments, as
//! RabbitMQ does. Readers find a record through the sparse map and read on sequentially.

pub mod segment;

use segment::{Data, Reader, Record};
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// RabbitMQ's default x-stream-max-segment-size-bytes.
pub const DEFAULT_SEGMENT_BYTES: u64 = 500_000_000;

/// A sparse map entry at least this many bytes after the previous one.
const SPARSE_EVERY: u64 = 64 * 1024;

/// What a log keeps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub segment_bytes: u64,
    pub max_bytes: Option<u64>,
    pub max_age_ms: Option<u64>,
}

#[derive(Debug)]
struct Segment {
    first: u64,
    /// One past the last offset written to it.
    end: u64,
    first_ts: u64,
    last_ts: u64,
    /// Bytes written.
    size: u64,
    /// (offset, position, timestamp) of a record at least every `SPARSE_EVERY` bytes.
    sparse: Vec<(u64, u64, u64)>,
    data: Data,
}

impl Segment {
    fn new(first: u64, data: Data) -> Self {
        Segment {
            first,
            end: first,
            first_ts: 0,
            last_ts: 0,
            size: 0,
            sparse: Vec::new(),
            data,
        }
    }

    fn note(&mut self, offset: u64, ts: u64, pos: u64, size: u64) {
        if self
            .sparse
            .last()
            .is_none_or(|&(_, p, _)| pos >= p + SPARSE_EVERY)
        {
            self.sparse.push((offset, pos, ts));
        }
        if self.end == self.first {
            self.first_ts = ts;
        }
        self.end = offset + 1;
        self.last_ts = self.last_ts.max(ts);
        self.size = pos + size;
    }

    /// Where to start reading for `offset` (a record at or before it).
    fn position_for(&self, offset: u64) -> u64 {
        let i = self.sparse.partition_point(|&(o, ..)| o <= offset);
        i.checked_sub(1).map_or(0, |i| self.sparse[i].1)
    }
}

#[derive(Debug, Default)]
struct Pending {
    buf: Vec<u8>,
    next: u64,
}

#[derive(Debug)]
struct Inner {
    segments: VecDeque<Segment>,
    /// First offset of the last chunk written (RabbitMQ's `last` starts there).
    last_chunk: u64,
    deleted: bool,
}

#[derive(Debug)]
pub struct Log {
    dir: Option<PathBuf>,
    limits: Mutex<Limits>,
    inner: Mutex<Inner>,
    pending: Mutex<Pending>,
    /// Offsets below this are in segment data (readable).
    written: AtomicU64,
    /// Offsets below this are synced.
    durable: AtomicU64,
}

/// A reader's place: the next offset, and where its record starts if known.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursor {
    pub offset: u64,
    hint: Option<(u64, u64)>,
}

impl Cursor {
    pub fn at(offset: u64) -> Self {
        Cursor { offset, hint: None }
    }
}

/// What the management API shows of a log.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogStats {
    pub first: u64,
    pub next: u64,
    pub segments: usize,
    pub bytes: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

impl Log {
    /// Open the log in `dir` (created if missing), or an empty one in memory (None).
    pub fn open(dir: Option<PathBuf>, limits: Limits) -> io::Result<Arc<Log>> {
        let mut segments = VecDeque::new();
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir)?;
            segments = recover(dir)?;
        }
        let next = segments.back().map_or(0, |s| s.end);
        let last_chunk = segments
            .back()
            .and_then(|s| s.sparse.last())
            .map_or(next, |&(o, ..)| o);
        Ok(Arc::new(Log {
            dir,
            limits: Mutex::new(limits),
            inner: Mutex::new(Inner {
                segments,
                last_chunk,
                deleted: false,
            }),
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                next,
            }),
            written: AtomicU64::new(next),
            durable: AtomicU64::new(next),
        }))
    }

    pub fn set_limits(&self, limits: Limits) {
        *lock(&self.limits) = limits;
    }

    /// Append a message record (`store::record` encoding); returns its offset and the bytes it
    /// adds. The caller serializes appends (the stream queue's lock), so `next_offset` read
    /// before is the offset this gets.
    pub fn append(&self, ts: u64, filter: Option<&str>, message: &[u8]) -> (u64, u64) {
        let mut p = lock(&self.pending);
        let offset = p.next;
        let before = p.buf.len();
        segment::encode(&mut p.buf, offset, ts, filter, message);
        p.next += 1;
        (offset, (p.buf.len() - before) as u64)
    }

    pub fn next_offset(&self) -> u64 {
        lock(&self.pending).next
    }

    /// Offsets below this can be read from the segments.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    pub fn first_offset(&self) -> u64 {
        let g = lock(&self.inner);
        g.segments
            .front()
            .map_or_else(|| self.written(), |s| s.first)
    }

    pub fn last_chunk(&self) -> u64 {
        lock(&self.inner).last_chunk
    }

    pub fn stats(&self) -> LogStats {
        let g = lock(&self.inner);
        let next = self.next_offset();
        LogStats {
            first: g.segments.front().map_or(next, |s| s.first),
            next,
            segments: g.segments.len(),
            bytes: g.segments.iter().map(|s| s.size).sum(),
        }
    }

    /// Write what was appended as one chunk and sync it (the committer thread). On an error
    /// nothing is lost: what was not written stays pending for the retry.
    pub fn flush(&self) -> io::Result<()> {
        let mut g = lock(&self.inner);
        if g.deleted {
            return Ok(());
        }
        let (buf, next) = {
            let mut p = lock(&self.pending);
            (std::mem::take(&mut p.buf), p.next)
        };
        let limits = *lock(&self.limits);
        let mut touched: Vec<Data> = Vec::new();
        let mut i = 0;
        let mut failure = None;
        if !buf.is_empty() {
            g.last_chunk = self.written();
        }
        while i < buf.len() {
            let (offset, _, size) = header(&buf[i..]);
            let roll = g
                .segments
                .back()
                .is_none_or(|s| s.size > 0 && s.size + size > limits.segment_bytes);
            if roll {
                if let Err(e) = self.roll(&mut g, offset) {
                    failure = Some(e);
                    break;
                }
            }
            // The run of records that fits in this segment goes in one write.
            let Some(seg) = g.segments.back_mut() else {
                break;
            };
            let start = seg.size;
            let mut j = i;
            let mut notes = Vec::new();
            while j < buf.len() {
                let (o, t, s) = header(&buf[j..]);
                if j > i && start + (j - i) as u64 + s > limits.segment_bytes {
                    break;
                }
                notes.push((o, t, start + (j - i) as u64, s));
                j += s as usize;
            }
            if let Err(e) = seg.data.write_at(start, &buf[i..j]) {
                let _ = seg.data.truncate(start);
                failure = Some(e);
                break;
            }
            for (o, t, pos, s) in notes {
                seg.note(o, t, pos, s);
            }
            if !touched.iter().any(|d| same_data(d, &seg.data)) {
                touched.push(seg.data.clone());
            }
            self.written.store(seg.end, Ordering::Release);
            i = j;
        }
        if let Some(e) = failure {
            let mut p = lock(&self.pending);
            let mut rest = buf[i..].to_vec();
            rest.extend_from_slice(&p.buf);
            p.buf = rest;
            return Err(e);
        }
        let upto = self.written();
        drop(g);
        for d in &touched {
            d.sync()?;
        }
        debug_assert!(upto <= next);
        self.durable.fetch_max(upto, Ordering::AcqRel);
        // By size at once; by age on the queue's tick, which reads the broker's clock.
        self.retain(None);
        Ok(())
    }

    /// Seal the active segment (its index file, synced) and start one at `first`.
    fn roll(&self, g: &mut Inner, first: u64) -> io::Result<()> {
        let data = match &self.dir {
            Some(dir) => {
                if let Some(last) = g.segments.back_mut() {
                    last.data.sync()?;
                    write_index(dir, last)?;
                    last.data = last.data.sealed();
                }
                Data::file(segment_path(dir, first))?
            }
            None => Data::memory(),
        };
        g.segments.push_back(Segment::new(first, data));
        Ok(())
    }

    /// Drop whole sealed segments past the size limit, or the age limit when given the time
    /// (ms); never the active one.
    pub fn retain(&self, now: Option<u64>) {
        let limits = *lock(&self.limits);
        let max_age = limits.max_age_ms.zip(now);
        if limits.max_bytes.is_none() && max_age.is_none() {
            return;
        }
        let mut g = lock(&self.inner);
        let mut total: u64 = g.segments.iter().map(|s| s.size).sum();
        while g.segments.len() > 1 {
            let Some(front) = g.segments.front() else {
                break;
            };
            let too_big = limits.max_bytes.is_some_and(|m| total > m);
            let too_old = max_age.is_some_and(|(a, now)| front.last_ts < now.saturating_sub(a));
            if !(too_big || too_old) {
                break;
            }
            total -= front.size;
            if let Some(s) = g.segments.pop_front() {
                s.data.remove();
            }
        }
    }

    /// Read records from `cur` on (those still kept: a cursor behind the first moves up), at
    /// most `max_records` or about `max_bytes`; advances the cursor.
    pub fn read(
        &self,
        cur: &mut Cursor,
        max_records: usize,
        max_bytes: usize,
    ) -> io::Result<Vec<Record>> {
        let (data, pos, end_pos, seg_first, seg_end) = {
            let g = lock(&self.inner);
            let written = self.written();
            if let Some(first) = g.segments.front().map(|s| s.first) {
                if cur.offset < first {
                    *cur = Cursor::at(first);
                }
            }
            if cur.offset >= written {
                return Ok(Vec::new());
            }
            let i = g.segments.partition_point(|s| s.first <= cur.offset);
            let Some(seg) = i.checked_sub(1).and_then(|i| g.segments.get(i)) else {
                return Ok(Vec::new());
            };
            let pos = match cur.hint {
                Some((f, p)) if f == seg.first => p,
                _ => seg.position_for(cur.offset),
            };
            (seg.data.clone(), pos, seg.size, seg.first, seg.end)
        };
        let mut reader = Reader::new(data, pos, end_pos);
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < max_records && bytes < max_bytes {
            let Some(r) = reader.next_record()? else {
                break;
            };
            if r.offset < cur.offset {
                continue;
            }
            bytes += r.message.len();
            cur.offset = r.offset + 1;
            out.push(r);
        }
        if out.is_empty() && cur.offset < seg_end {
            // Damage inside a segment (it was synced, so this should not happen): skip it
            // rather than stall every reader on it.
            tracing::warn!(offset = cur.offset, "unreadable stream records skipped");
            *cur = Cursor::at(seg_end);
            return Ok(out);
        }
        cur.hint = if cur.offset >= seg_end {
            None
        } else {
            Some((seg_first, reader.pos))
        };
        Ok(out)
    }

    /// The first offset whose record was appended at or after `ts` (ms); the next offset if
    /// none was.
    pub fn offset_at(&self, ts: u64) -> io::Result<u64> {
        let found = {
            let g = lock(&self.inner);
            g.segments
                .iter()
                .find(|s| s.end > s.first && s.last_ts >= ts)
                .map(|s| {
                    let i = s.sparse.partition_point(|&(_, _, t)| t < ts);
                    let (o, p) = i
                        .checked_sub(1)
                        .map_or((s.first, 0), |i| (s.sparse[i].0, s.sparse[i].1));
                    (s.data.clone(), p, s.size, o, s.end)
                })
        };
        let Some((data, pos, end, _, seg_end)) = found else {
            return Ok(self.next_offset());
        };
        let mut reader = Reader::new(data, pos, end);
        while let Some(r) = reader.next_record()? {
            if r.ts >= ts {
                return Ok(r.offset);
            }
        }
        Ok(seg_end)
    }

    /// Empty the log and start again at offset 0 (a test broker's reset).
    pub fn clear(&self) {
        let mut g = lock(&self.inner);
        for s in g.segments.drain(..) {
            s.data.remove();
        }
        g.last_chunk = 0;
        *lock(&self.pending) = Pending::default();
        self.written.store(0, Ordering::Release);
        self.durable.store(0, Ordering::Release);
    }

    /// The queue was deleted: its files go, and later flushes do nothing.
    pub fn delete(&self) {
        let mut g = lock(&self.inner);
        g.deleted = true;
        for s in g.segments.drain(..) {
            s.data.remove();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn same_data(a: &Data, b: &Data) -> bool {
    match (a, b) {
        (Data::File { file: x, .. }, Data::File { file: y, .. }) => Arc::ptr_eq(x, y),
        (Data::Memory(x), Data::Memory(y)) => Arc::ptr_eq(x, y),
        _ => false,
    }
}

/// Offset, timestamp and size of the record at the start of `buf` (written by `encode`).
fn header(buf: &[u8]) -> (u64, u64, u64) {
    let word = |at: usize| -> u64 {
        buf.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_be_bytes)
    };
    let len = buf
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_be_bytes);
    (word(8), word(16), segment::PREFIX as u64 + u64::from(len))
}

/// A sealed segment's index file: its sparse map, then end, first/last timestamp and size,
/// then a crc of all that.
fn write_index(dir: &Path, s: &Segment) -> io::Result<()> {
    let mut out = Vec::with_capacity(s.sparse.len() * 24 + 36);
    for &(o, p, t) in &s.sparse {
        for v in [o, p, t] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    for v in [s.end, s.first_ts, s.last_ts, s.size] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    let path = segment_path(dir, s.first).with_extension("idx");
    std::fs::write(&path, &out)?;
    std::fs::File::open(&path)?.sync_all()
}

fn read_index(path: &Path, first: u64, data: Data) -> Option<Segment> {
    let raw = std::fs::read(path.with_extension("idx")).ok()?;
    let (body, crc) = raw.split_at_checked(raw.len().checked_sub(4)?)?;
    if crc32fast::hash(body) != u32::from_be_bytes(crc.try_into().ok()?) || body.len() < 32 {
        return None;
    }
    let words: Vec<u64> = body
        .chunks_exact(8)
        .filter_map(|c| c.try_into().ok().map(u64::from_be_bytes))
        .collect();
    let (map, tail) = words.split_at(words.len() - 4);
    if map.len() % 3 != 0 || data.size().ok()? != tail[3] {
        return None;
    }
    Some(Segment {
        first,
        end: tail[0],
        first_ts: tail[1],
        last_ts: tail[2],
        size: tail[3],
        sparse: map.chunks_exact(3).map(|c| (c[0], c[1], c[2])).collect(),
        data,
    })
}

/// Read every record of a segment, checking each: the valid prefix becomes the segment (the
/// rest, a torn tail, is cut off).
fn scan(first: u64, data: Data) -> io::Result<(Segment, bool)> {
    let len = data.size()?;
    let mut seg = Segment::new(first, data.clone());
    let mut reader = Reader::new(data.clone(), 0, len);
    while let Some(r) = reader.next_record()? {
        if r.offset != seg.end {
            break;
        }
        seg.note(r.offset, r.ts, r.pos, r.size);
    }
    let torn = seg.size < len;
    if torn {
        tracing::warn!(
            segment = first,
            kept = seg.size,
            cut = len - seg.size,
            "stream segment had a torn tail; cut"
        );
        data.truncate(seg.size)?;
        data.sync()?;
    }
    Ok((seg, torn))
}

fn recover(dir: &Path) -> io::Result<VecDeque<Segment>> {
    let mut firsts: Vec<u64> = std::fs::read_dir(dir)?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    firsts.sort_unstable();
    let mut out: VecDeque<Segment> = VecDeque::new();
    let n = firsts.len();
    for (i, first) in firsts.into_iter().enumerate() {
        let path = segment_path(dir, first);
        let data = Data::file(path.clone())?;
        let expected = out.back().map(|s| s.end);
        if expected.is_some_and(|e| e != first) {
            // A gap: what follows it cannot be trusted to continue the log.
            tracing::warn!(segment = first, "stream segment out of sequence; dropped");
            data.remove();
            continue;
        }
        let last = i + 1 == n;
        let indexed = (!last)
            .then(|| read_index(&path, first, data.clone()))
            .flatten();
        let mut seg = match indexed {
            Some(s) => s,
            None => {
                let (s, torn) = scan(first, data)?;
                if torn && !last {
                    // A sealed segment is synced before the next one starts; if it was cut
                    // anyway, nothing after it is kept.
                    out.push_back(s);
                    break;
                }
                s
            }
        };
        if !last {
            seg.data = seg.data.sealed();
        }
        out.push_back(seg);
    }
    // Files beyond a break are removed so that the next roll starts cleanly.
    let keep: Vec<u64> = out.iter().map(|s| s.first).collect();
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().into_string().unwrap_or_default();
        if let Some(f) = name
            .strip_suffix(".seg")
            .and_then(|n| n.parse::<u64>().ok())
        {
            if !keep.contains(&f) {
                let _ = std::fs::remove_file(e.path());
                let _ = std::fs::remove_file(e.path().with_extension("idx"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
