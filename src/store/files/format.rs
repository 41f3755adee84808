//! The bytes of a queue's files: entries in segment files, acks in ack files, and the bitmap of
//! a segment's live positions.
//!
//! An entry: `len u32 | crc32 u32 | seq u64 | id u64 | expires_at u64 | size u32 | priority u8 |
//! expiring u8 | record`, big-endian, where `len` counts what follows the crc and the crc covers
//! it (`expires_at` is u64::MAX when the entry has no expiry). An ack: `seq u64 | before u64 |
//! crc32 u32`, where `before` is the segment's length when the ack was written: it acks the
//! entry of `seq` that starts before it, and no entry written at that position later (a queue
//! that restarts with its newest positions acked hands them out again).
//! A record cut short or with a bad crc ends the readable part of a file: that is how recovery
//! finds a torn tail after a crash.

use crate::store::{Entry, MessageMeta};

/// Positions per segment file: segment `k` holds the entries of positions `k*SEG..(k+1)*SEG`, so
/// finding a position's file is arithmetic, and a queue drained from its head frees whole
/// files behind it.
pub const SEG: u64 = 4096;
/// Bytes before an entry's length-counted part.
pub const PREFIX: usize = 8;
/// seq, id, expires_at, size, priority, expiring.
const FIXED: usize = 30;
/// One ack record.
pub const ACK: usize = 20;
/// A length above this is damage, not data (RabbitMQ's largest message is 512 MiB).
const MAX_LEN: u32 = 1 << 30;

/// Append one entry to `out`.
pub fn encode_entry(
    out: &mut Vec<u8>,
    seq: u64,
    id: u64,
    meta: &MessageMeta,
    expires_at: Option<u64>,
    record: &[u8],
) {
    let start = out.len();
    let len = u32::try_from(FIXED + record.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&expires_at.unwrap_or(u64::MAX).to_be_bytes());
    out.extend_from_slice(&meta.size.to_be_bytes());
    out.push(meta.priority);
    out.push(u8::from(meta.expiring));
    out.extend_from_slice(record);
    let crc = crc32fast::hash(&out[start + PREFIX..]);
    out[start + 4..start + PREFIX].copy_from_slice(&crc.to_be_bytes());
}

/// An entry's fixed part: prefix and header.
pub const HEADER: usize = PREFIX + FIXED;

/// An entry's fixed part at file position `pos`: the entry, its crc, and its record's length
/// (what follows the header). None if it cannot be an entry.
pub fn parse_header(h: &[u8], pos: u64) -> Option<(Entry, u32, usize)> {
    let h = h.get(..HEADER)?;
    let len = u32::from_be_bytes(h[..4].try_into().ok()?);
    if len > MAX_LEN || (len as usize) < FIXED {
        return None;
    }
    let crc = u32::from_be_bytes(h[4..8].try_into().ok()?);
    let u64_at = |i: usize| Some(u64::from_be_bytes(h.get(i..i + 8)?.try_into().ok()?));
    let expires_at = u64_at(24)?;
    let entry = Entry {
        seq: u64_at(8)?,
        id: u64_at(16)?,
        meta: Some(MessageMeta {
            size: u32::from_be_bytes(h[32..36].try_into().ok()?),
            priority: h[36],
            expiring: h[37] != 0,
        }),
        expires_at: (expires_at != u64::MAX).then_some(expires_at),
        loc: pos,
    };
    Some((entry, crc, len as usize - FIXED))
}

/// Whether an entry's header and record match its crc.
pub fn check(header: &[u8], record: &[u8], crc: u32) -> bool {
    let mut h = crc32fast::Hasher::new();
    h.update(&header[PREFIX..HEADER]);
    h.update(record);
    h.finalize() == crc
}

/// The entry at the start of `buf`, at file position `pos`, with its record's place in `buf`;
/// None if it is damaged or cut short.
pub fn parse_entry(buf: &[u8], pos: u64) -> Option<(Entry, std::ops::Range<usize>)> {
    let (entry, crc, rlen) = parse_header(buf, pos)?;
    let record = buf.get(HEADER..HEADER + rlen)?;
    check(buf, record, crc).then_some((entry, HEADER..HEADER + rlen))
}

/// An entry's whole size from its first bytes (None: damaged).
pub fn entry_size(prefix: &[u8]) -> Option<usize> {
    let len = u32::from_be_bytes(prefix.get(..4)?.try_into().ok()?);
    (len <= MAX_LEN && len as usize >= FIXED).then_some(PREFIX + len as usize)
}

pub fn encode_ack(out: &mut Vec<u8>, seq: u64, before: u64) {
    let start = out.len();
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&before.to_be_bytes());
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// The acks in `buf`, as (seq, before), and how many bytes of it are whole, checked acks.
pub fn parse_acks(buf: &[u8]) -> (Vec<(u64, u64)>, usize) {
    let mut out = Vec::with_capacity(buf.len() / ACK);
    let mut good = 0;
    for a in buf.chunks_exact(ACK) {
        let (body, crc) = a.split_at(16);
        if crc32fast::hash(body).to_be_bytes() != crc {
            break;
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&body[i..i + 8]);
            u64::from_be_bytes(b)
        };
        out.push((u64_at(0), u64_at(8)));
        good += ACK;
    }
    (out, good)
}

/// Which positions of one segment are live (written, not acked): 512 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bits(Box<[u64; (SEG / 64) as usize]>);

impl Default for Bits {
    fn default() -> Self {
        Bits(Box::new([0; (SEG / 64) as usize]))
    }
}

impl Bits {
    fn at(seq: u64) -> (usize, u64) {
        let i = seq % SEG;
        ((i / 64) as usize, 1 << (i % 64))
    }

    /// Set; true if it was clear.
    pub fn set(&mut self, seq: u64) -> bool {
        let (w, b) = Self::at(seq);
        let was = self.0[w] & b != 0;
        self.0[w] |= b;
        !was
    }

    /// Clear; true if it was set.
    pub fn clear(&mut self, seq: u64) -> bool {
        let (w, b) = Self::at(seq);
        let was = self.0[w] & b != 0;
        self.0[w] &= !b;
        was
    }

    pub fn get(&self, seq: u64) -> bool {
        let (w, b) = Self::at(seq);
        self.0[w] & b != 0
    }

    /// The live positions of segment `k`.
    pub fn positions(&self, k: u64) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().enumerate().flat_map(move |(w, bits)| {
            (0..64u64)
                .filter(move |b| bits & (1 << b) != 0)
                .map(move |b| k * SEG + w as u64 * 64 + b)
        })
    }

    pub fn count(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }
}
