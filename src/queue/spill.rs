//! Spill: scratch files for the messages of a deep queue that have no record in the store.
//!
//! A persistent message in a durable queue pages out to the store (`paged`). Anything else
//! (transient messages, and every message of a non-durable queue) has no record to read back,
//! so under memory pressure it is written here instead: one directory per queue under the data
//! directory's `spill/`, one run of segment files per priority level. Nothing here is durable:
//! no fsync, and the whole `spill/` directory is removed at boot (RabbitMQ drops transient
//! messages on restart the same way). An entry carries what the queue knows of the message
//! (position, expiry, redelivered flag, delivery count) beside its record, so any ready message
//! may spill, wherever it came from.
//!
//! When to spill (`SpillTo::active`): while memory is past the paging ratio of the watermark
//! (RabbitMQ's vm_memory_high_watermark_paging_ratio), and always for a queue whose window was
//! set explicitly (lazy mode, x-max-in-memory-*).
//!
//! Entry: `len u32 | crc32 u32 | seq u64 | expires_at u64 (MAX: none) | delivery_count u32 |
//! redelivered u8 | record`, big-endian; `len` counts what follows the crc.

use super::QueuedMessage;
use crate::message::Message;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A segment is closed once this long; it is deleted when reading has passed it.
const SEGMENT_BYTES: u64 = 32 * 1024 * 1024;
/// Writes are gathered up to this much per level before they reach the file.
const BUFFER_BYTES: usize = 64 * 1024;
/// A read takes this much of a file at once (a larger entry is read alone).
const READ_BYTES: u64 = 1024 * 1024;
const HEADER: usize = 8;
const FIXED: usize = 8 + 8 + 4 + 1;

/// Where queues spill, and when (shared by every queue of the broker).
#[derive(Debug, Clone)]
pub struct SpillTo {
    /// The broker's `spill/` directory (emptied at boot).
    pub dir: Arc<Path>,
    /// Memory is past the paging ratio (`alarm::Alarms::check` sets it).
    pub pressure: Arc<AtomicBool>,
}

impl SpillTo {
    /// Whether a queue with this window spills now.
    pub fn active(&self, explicit_window: bool) -> bool {
        explicit_window || self.pressure.load(Ordering::Relaxed)
    }
}

/// Where an entry starts: segment number and offset in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Pos {
    seg: u64,
    off: u64,
}

/// One priority level's segments.
#[derive(Debug, Default)]
struct Level {
    /// Where the next entry goes (the buffer included).
    end: Pos,
    /// Entries not yet written to the file, starting at `end.off - buf.len()`.
    buf: Vec<u8>,
    /// The oldest segment not deleted.
    oldest: u64,
}

/// One queue's spill files (made at its first spill; the directory at the first write).
#[derive(Debug)]
pub(super) struct Spill {
    to: SpillTo,
    /// This queue's directory, once created.
    dir: Option<PathBuf>,
    levels: Vec<Level>,
}

/// What one read brought back.
pub(super) struct Read {
    pub messages: Vec<QueuedMessage>,
    /// Where the next entry starts.
    pub next: Pos,
    /// An entry was damaged or a file unreadable: the rest of the stretch is lost.
    pub broken: bool,
}

impl Spill {
    pub fn new(to: SpillTo) -> Spill {
        Spill {
            to,
            dir: None,
            levels: Vec::new(),
        }
    }

    fn path(&self, level: usize, seg: u64) -> PathBuf {
        let name = format!("{level}-{seg:08}.spill");
        self.dir
            .as_ref()
            .map_or_else(|| name.clone().into(), |d| d.join(&name))
    }

    /// Append `e` to `level`'s files; where it starts.
    pub fn append(&mut self, level: usize, e: &QueuedMessage) -> std::io::Result<Pos> {
        if self.dir.is_none() {
            // Unique per queue for the broker's life: a queue deleted and declared again must
            // not find the old one's files.
            static NEXT: AtomicU64 = AtomicU64::new(1);
            let dir = self
                .to
                .dir
                .join(NEXT.fetch_add(1, Ordering::Relaxed).to_string());
            std::fs::create_dir_all(&dir)?;
            self.dir = Some(dir);
        }
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Level::default);
        }
        let record = crate::store::record::encode(&e.message);
        let len = FIXED + record.len();
        let len32 = u32::try_from(len).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        let mut rest = Vec::with_capacity(len);
        rest.extend_from_slice(&e.seq.to_be_bytes());
        rest.extend_from_slice(&e.expires_at.unwrap_or(u64::MAX).to_be_bytes());
        rest.extend_from_slice(&e.delivery_count.to_be_bytes());
        rest.push(u8::from(e.redelivered));
        rest.extend_from_slice(&record);
        // Whatever fails happens before the entry is taken: an error leaves nothing half-done.
        if self.levels[level].buf.len() >= BUFFER_BYTES
            || self.levels[level].end.off >= SEGMENT_BYTES
        {
            self.flush(level)?;
        }
        let lv = &mut self.levels[level];
        if lv.end.off >= SEGMENT_BYTES {
            lv.end = Pos {
                seg: lv.end.seg + 1,
                off: 0,
            };
        }
        let at = lv.end;
        lv.buf.extend_from_slice(&len32.to_be_bytes());
        lv.buf
            .extend_from_slice(&crc32fast::hash(&rest).to_be_bytes());
        lv.buf.extend_from_slice(&rest);
        lv.end.off += (HEADER + len) as u64;
        Ok(at)
    }

    /// Write `level`'s buffer to its current segment.
    fn flush(&mut self, level: usize) -> std::io::Result<()> {
        if self.levels.get(level).is_none_or(|l| l.buf.is_empty()) {
            return Ok(());
        }
        let path = self.path(level, self.levels[level].end.seg);
        let lv = &mut self.levels[level];
        let start = lv.end.off - lv.buf.len() as u64;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)?;
        file.write_all_at(&lv.buf, start)?;
        lv.buf.clear();
        if lv.buf.capacity() > BUFFER_BYTES * 2 {
            lv.buf.shrink_to(BUFFER_BYTES);
        }
        Ok(())
    }

    /// Up to `count` entries of `level` from `at` on, stopping after `max_bytes` of bodies;
    /// `avg` is about what one body takes (a read takes no more of a file than the batch
    /// needs). Entries still in the write buffer are read from it. A damaged entry, or a file
    /// that cannot be read, ends what can be read of this stretch (`broken`): spill files are
    /// scratch, so what they held is lost, and the queue goes on without it.
    pub fn read(&mut self, level: usize, at: Pos, count: usize, max_bytes: u64, avg: u64) -> Read {
        let mut r = Read {
            messages: Vec::new(),
            next: at,
            broken: false,
        };
        if let Err(e) = self.read_into(level, count, max_bytes, avg, &mut r) {
            tracing::error!(dir = ?self.dir, level, error = %e, "cannot read spilled messages; they are lost");
            r.broken = true;
        } else if r.broken {
            tracing::error!(dir = ?self.dir, level, "a spilled message is damaged; the rest of its stretch is lost");
        }
        r
    }

    fn read_into(
        &self,
        level: usize,
        count: usize,
        max_bytes: u64,
        avg: u64,
        r: &mut Read,
    ) -> std::io::Result<()> {
        let Some(end) = self.levels.get(level).map(|l| l.end) else {
            return Ok(());
        };
        let mut bytes = 0u64;
        while r.messages.len() < count && bytes < max_bytes && r.next != end {
            let at = r.next;
            let left = (count - r.messages.len()) as u64;
            let want = left
                .saturating_mul(avg.saturating_add((HEADER + FIXED + 256) as u64))
                .clamp(64 * 1024, READ_BYTES);
            let (block, seg_len) = self.fetch(level, at, want)?;
            if block.is_empty() {
                if at.seg < end.seg {
                    r.next = Pos {
                        seg: at.seg + 1,
                        off: 0,
                    };
                    continue;
                }
                r.broken = true;
                return Ok(());
            }
            let mut used = 0usize;
            while r.messages.len() < count && bytes < max_bytes {
                let Some(head) = block.get(used..used + HEADER) else {
                    break;
                };
                let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
                let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
                let start = at.off + used as u64;
                if len < FIXED || start + (HEADER + len) as u64 > seg_len {
                    r.broken = true;
                    return Ok(());
                }
                let rest = match block.get(used + HEADER..used + HEADER + len) {
                    Some(x) => std::borrow::Cow::Borrowed(x),
                    // Longer than the block: the first entry of the next read, or alone.
                    None if used > 0 => break,
                    None => {
                        let pos = Pos {
                            seg: at.seg,
                            off: start + HEADER as u64,
                        };
                        std::borrow::Cow::Owned(self.fetch(level, pos, len as u64)?.0)
                    }
                };
                if rest.len() != len {
                    r.broken = true;
                    return Ok(());
                }
                used += HEADER + len;
                let Some(e) = (crc32fast::hash(&rest) == crc)
                    .then(|| decode(&rest))
                    .flatten()
                else {
                    r.broken = true;
                    return Ok(());
                };
                bytes += e.message.body.len() as u64;
                r.messages.push(e);
            }
            if used == 0 {
                r.broken = true;
                return Ok(());
            }
            r.next.off += used as u64;
            if r.next.off >= seg_len && r.next.seg < end.seg {
                r.next = Pos {
                    seg: r.next.seg + 1,
                    off: 0,
                };
            }
        }
        Ok(())
    }

    /// Up to `want` bytes of `level`'s segment `at.seg` from `at.off`: from its file, and for
    /// the segment being written, from the write buffer beyond it. With the segment's length.
    fn fetch(&self, level: usize, at: Pos, want: u64) -> std::io::Result<(Vec<u8>, u64)> {
        let lv = &self.levels[level];
        let current = at.seg == lv.end.seg;
        let buffered_from = lv.end.off - lv.buf.len() as u64;
        let seg_len = if current {
            lv.end.off
        } else {
            self.segment_len(level, at.seg)?
        };
        let to = at.off.saturating_add(want).min(seg_len);
        let in_file = if current { buffered_from } else { seg_len };
        let mut out = Vec::new();
        if at.off < in_file.min(to) {
            let n = usize::try_from(in_file.min(to) - at.off).unwrap_or(0);
            out.resize(n, 0);
            File::open(self.path(level, at.seg))?.read_exact_at(&mut out, at.off)?;
        }
        if current && to > buffered_from {
            let from = usize::try_from(at.off.max(buffered_from) - buffered_from).unwrap_or(0);
            let upto = usize::try_from(to - buffered_from).unwrap_or(0);
            out.extend_from_slice(lv.buf.get(from..upto).unwrap_or_default());
        }
        Ok((out, seg_len))
    }

    fn segment_len(&self, level: usize, seg: u64) -> std::io::Result<u64> {
        Ok(std::fs::metadata(self.path(level, seg))?.len())
    }

    /// Reading has reached `at`: segments before it go.
    pub fn release(&mut self, level: usize, at: Pos) {
        if level >= self.levels.len() {
            return;
        }
        while self.levels[level].oldest < at.seg {
            let seg = self.levels[level].oldest;
            let _ = std::fs::remove_file(self.path(level, seg));
            self.levels[level].oldest += 1;
        }
    }

    /// Nothing of `level` is left to read: its files go, and writing starts over.
    pub fn clear(&mut self, level: usize) {
        if level >= self.levels.len() {
            return;
        }
        let end = self.levels[level].end;
        for seg in self.levels[level].oldest..=end.seg {
            let _ = std::fs::remove_file(self.path(level, seg));
        }
        self.levels[level] = Level {
            end: Pos {
                seg: end.seg + 1,
                off: 0,
            },
            buf: Vec::new(),
            oldest: end.seg + 1,
        };
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn decode(rest: &[u8]) -> Option<QueuedMessage> {
    let u64_at = |i: usize| -> Option<u64> {
        Some(u64::from_be_bytes(rest.get(i..i + 8)?.try_into().ok()?))
    };
    let seq = u64_at(0)?;
    let expires = u64_at(8)?;
    let delivery_count = u32::from_be_bytes(rest.get(16..20)?.try_into().ok()?);
    let redelivered = *rest.get(20)? != 0;
    let d = crate::store::record::decode(rest.get(FIXED..)?)?;
    let m = Message::from_raw(d.exchange, d.routing_key, &d.raw_properties, d.body)?;
    Some(QueuedMessage {
        seq,
        message: Arc::new(m),
        redelivered,
        expires_at: (expires != u64::MAX).then_some(expires),
        delivery_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(seq: u64, body: &[u8]) -> QueuedMessage {
        let m = Message::new("x", "k", Default::default(), Bytes::copy_from_slice(body));
        QueuedMessage {
            seq,
            message: Arc::new(m),
            redelivered: seq.is_multiple_of(2),
            expires_at: seq.is_multiple_of(3).then_some(seq * 10),
            delivery_count: (seq % 5) as u32,
        }
    }

    fn spill(tag: &str) -> Spill {
        let dir = std::env::temp_dir().join(format!("warren-spill-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Spill::new(SpillTo {
            dir: dir.into(),
            pressure: Default::default(),
        })
    }

    #[test]
    fn entries_come_back_in_order_with_their_flags_across_segments() {
        let mut s = spill("order");
        let body = vec![7u8; 300_000];
        let first = s.append(1, &entry(0, &body)).expect("append");
        for seq in 1..300 {
            s.append(1, &entry(seq, &body[..(seq as usize * 997) % body.len()]))
                .expect("append");
        }
        assert!(s.levels[1].end.seg >= 1, "more than one segment");
        let mut at = first;
        let mut seen = 0;
        while seen < 300 {
            let r = s.read(1, at, 7, u64::MAX, 100_000);
            assert!(!r.broken);
            assert!(!r.messages.is_empty());
            for e in r.messages {
                let want = entry(seen, &[]);
                assert_eq!(e.seq, seen);
                assert_eq!(e.redelivered, want.redelivered);
                assert_eq!(e.expires_at, want.expires_at);
                assert_eq!(e.delivery_count, want.delivery_count);
                let len = if seen == 0 {
                    body.len()
                } else {
                    (seen as usize * 997) % body.len()
                };
                assert_eq!(e.message.body.len(), len);
                seen += 1;
            }
            at = r.next;
            s.release(1, at);
        }
        assert_eq!(at, s.levels[1].end);
        assert!(!s.path(1, 0).exists(), "segments read past are deleted");
        let dir = s.dir.clone().expect("created");
        drop(s);
        assert!(!dir.exists(), "the queue's files go with it");
    }

    #[test]
    fn a_damaged_entry_ends_the_level_without_panicking() {
        let mut s = spill("damaged");
        let at = s.append(0, &entry(1, b"hello")).expect("append");
        s.append(0, &entry(2, b"world")).expect("append");
        s.flush(0).expect("flush");
        let path = s.path(0, 0);
        let mut data = std::fs::read(&path).expect("read");
        let last = data.len() - 1;
        data[last] ^= 0xff;
        std::fs::write(&path, &data).expect("write");
        let r = s.read(0, at, 10, u64::MAX, 10);
        assert_eq!(r.messages.len(), 1);
        assert!(r.broken);
        // A length past the file's end is refused before anything is allocated for it.
        data[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
        std::fs::write(&path, &data).expect("write");
        let r = s.read(0, at, 10, u64::MAX, 10);
        assert!(r.messages.is_empty() && r.broken);
        s.clear(0);
        assert!(!path.exists());
    }
}
