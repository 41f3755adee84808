//! One segment of a stream's log: its bytes (a file, or memory for in-memory brokers), the
//! record format, and reading records back in order with their checksums checked.
//!
//! A record: `len u32 | crc32 u32 | offset u64 | timestamp u64 | filter_len u16 | filter |
//! message`, big-endian, where `len` counts what follows the crc and the crc covers it. A
//! record that is cut short or whose crc does not match ends the readable part of a segment:
//! that is how recovery finds a torn tail after a crash.

use bytes::Bytes;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// Bytes before the record's length-counted part.
pub const PREFIX: usize = 8;
/// offset, timestamp and filter length.
const FIXED: usize = 18;
/// A record larger than this is damage, not data (a message is at most 512 MiB in RabbitMQ).
const MAX_RECORD: u32 = 1 << 30;

/// Append one record to `out`.
pub fn encode(out: &mut Vec<u8>, offset: u64, ts: u64, filter: Option<&str>, message: &[u8]) {
    let filter = filter.map_or(&[][..], |f| &f.as_bytes()[..f.len().min(u16::MAX as usize)]);
    let len = FIXED + filter.len() + message.len();
    let start = out.len();
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&(filter.len() as u16).to_be_bytes());
    out.extend_from_slice(filter);
    out.extend_from_slice(message);
    let crc = crc32fast::hash(&out[start + PREFIX..]);
    out[start + 4..start + PREFIX].copy_from_slice(&crc.to_be_bytes());
}

/// A record read back.
#[derive(Debug, Clone)]
pub struct Record {
    pub offset: u64,
    pub ts: u64,
    pub filter: Option<Box<str>>,
    /// The message in `store::record`'s encoding.
    pub message: Bytes,
    /// Where the record starts in its segment, and its whole size.
    pub pos: u64,
    pub size: u64,
}

/// The header fields of a record at the start of `buf` (which holds at least the record),
/// checked; None if it is damaged or incomplete.
pub fn parse(buf: &[u8], pos: u64) -> Option<Record> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?);
    if len > MAX_RECORD || (len as usize) < FIXED {
        return None;
    }
    let body = buf.get(PREFIX..PREFIX + len as usize)?;
    let crc = u32::from_be_bytes(buf.get(4..8)?.try_into().ok()?);
    if crc32fast::hash(body) != crc {
        return None;
    }
    let offset = u64::from_be_bytes(body[..8].try_into().ok()?);
    let ts = u64::from_be_bytes(body[8..16].try_into().ok()?);
    let flen = usize::from(u16::from_be_bytes(body[16..18].try_into().ok()?));
    let filter = body.get(FIXED..FIXED + flen)?;
    let filter = (!filter.is_empty()).then(|| String::from_utf8_lossy(filter).into());
    Some(Record {
        offset,
        ts,
        filter,
        message: Bytes::copy_from_slice(&body[FIXED + flen..]),
        pos,
        size: (PREFIX + len as usize) as u64,
    })
}

/// Where a segment's bytes live.
#[derive(Debug, Clone)]
pub enum Data {
    /// The active segment: open for appends.
    File {
        file: Arc<File>,
        path: PathBuf,
    },
    /// A sealed segment: opened for each read, so a stream of many segments holds no file
    /// descriptors for them.
    Sealed(PathBuf),
    Memory(Arc<RwLock<Vec<u8>>>),
}

impl Data {
    pub fn memory() -> Self {
        Data::Memory(Arc::default())
    }

    /// Create (or open) a segment file.
    pub fn file(path: PathBuf) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        Ok(Data::File {
            file: Arc::new(file),
            path,
        })
    }

    /// The same bytes, sealed: nothing more is written to them.
    pub fn sealed(&self) -> Self {
        match self {
            Data::File { path, .. } => Data::Sealed(path.clone()),
            other => other.clone(),
        }
    }

    pub fn size(&self) -> io::Result<u64> {
        match self {
            Data::File { file, .. } => Ok(file.metadata()?.len()),
            Data::Sealed(path) => Ok(std::fs::metadata(path)?.len()),
            Data::Memory(v) => Ok(v.read().unwrap_or_else(|p| p.into_inner()).len() as u64),
        }
    }

    /// Read up to `buf.len()` bytes at `pos`; returns how many (fewer only at the end).
    pub fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Data::File { file, .. } => read_full(file, pos, buf),
            Data::Sealed(path) => read_full(&File::open(path)?, pos, buf),
            Data::Memory(v) => {
                let v = v.read().unwrap_or_else(|p| p.into_inner());
                let start = usize::try_from(pos).unwrap_or(usize::MAX).min(v.len());
                let n = buf.len().min(v.len() - start);
                buf[..n].copy_from_slice(&v[start..start + n]);
                Ok(n)
            }
        }
    }

    pub fn write_at(&self, pos: u64, bytes: &[u8]) -> io::Result<()> {
        match self {
            Data::File { file, .. } => file.write_all_at(bytes, pos),
            Data::Sealed(_) => Err(io::Error::other("write to a sealed stream segment")),
            Data::Memory(v) => {
                let mut v = v.write().unwrap_or_else(|p| p.into_inner());
                let at = usize::try_from(pos).unwrap_or(usize::MAX).min(v.len());
                v.truncate(at);
                v.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    pub fn truncate(&self, len: u64) -> io::Result<()> {
        match self {
            Data::File { file, .. } => file.set_len(len),
            Data::Sealed(path) => std::fs::OpenOptions::new()
                .write(true)
                .open(path)?
                .set_len(len),
            Data::Memory(v) => {
                let mut v = v.write().unwrap_or_else(|p| p.into_inner());
                v.truncate(usize::try_from(len).unwrap_or(usize::MAX));
                Ok(())
            }
        }
    }

    pub fn sync(&self) -> io::Result<()> {
        match self {
            Data::File { file, .. } => file.sync_data(),
            Data::Sealed(path) => File::open(path)?.sync_data(),
            Data::Memory(_) => Ok(()),
        }
    }

    pub fn remove(&self) {
        if let Data::File { path, .. } | Data::Sealed(path) = self {
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_file(path.with_extension("idx"));
        }
    }
}

fn read_full(file: &File, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Reads a segment's records in order from a position, a buffer at a time.
pub struct Reader {
    data: Data,
    /// Where the next record starts.
    pub pos: u64,
    /// Bytes readable (records are never read past this).
    end: u64,
    buf: Vec<u8>,
    /// `buf` holds the segment's bytes from here.
    buf_at: u64,
}

/// How much a reader asks for at once.
const READ_AHEAD: usize = 256 * 1024;

impl Reader {
    pub fn new(data: Data, pos: u64, end: u64) -> Self {
        Reader {
            data,
            pos,
            end,
            buf: Vec::new(),
            buf_at: pos,
        }
    }

    /// The next record, or None at the readable end or at damage (`Err` only for I/O).
    pub fn next_record(&mut self) -> io::Result<Option<Record>> {
        if self.pos + PREFIX as u64 > self.end {
            return Ok(None);
        }
        let mut head = [0u8; 4];
        if !self.fill(self.pos, PREFIX)? {
            return Ok(None);
        }
        let at = (self.pos - self.buf_at) as usize;
        head.copy_from_slice(&self.buf[at..at + 4]);
        let len = u32::from_be_bytes(head);
        if len > MAX_RECORD {
            return Ok(None);
        }
        let size = PREFIX + len as usize;
        if self.pos + size as u64 > self.end || !self.fill(self.pos, size)? {
            return Ok(None);
        }
        let at = (self.pos - self.buf_at) as usize;
        let Some(r) = parse(&self.buf[at..at + size], self.pos) else {
            return Ok(None);
        };
        self.pos += size as u64;
        Ok(Some(r))
    }

    /// Make `buf` hold `len` bytes from `pos`; false if the segment ends before.
    fn fill(&mut self, pos: u64, len: usize) -> io::Result<bool> {
        let have = self.buf_at + self.buf.len() as u64;
        if pos >= self.buf_at && pos + len as u64 <= have {
            return Ok(true);
        }
        let want = len.max(READ_AHEAD).min((self.end - pos) as usize).max(len);
        self.buf.resize(want, 0);
        let n = self.data.read_at(pos, &mut self.buf)?;
        self.buf.truncate(n);
        self.buf_at = pos;
        Ok(n >= len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_ends_the_segment() {
        let data = Data::memory();
        let mut out = Vec::new();
        encode(&mut out, 7, 1000, Some("eu"), b"first");
        encode(&mut out, 8, 1001, None, b"second");
        let good = out.len() as u64;
        encode(&mut out, 9, 1002, None, b"torn");
        let last = out.len();
        out[last - 2] ^= 0xff;
        data.write_at(0, &out).expect("write");
        let mut r = Reader::new(data, 0, out.len() as u64);
        let a = r.next_record().expect("io").expect("first");
        assert_eq!((a.offset, a.ts, a.filter.as_deref()), (7, 1000, Some("eu")));
        assert_eq!(&a.message[..], b"first");
        let b = r.next_record().expect("io").expect("second");
        assert_eq!(
            (b.offset, b.filter, &b.message[..]),
            (8, None, &b"second"[..])
        );
        assert!(r.next_record().expect("io").is_none());
        assert_eq!(r.pos, good);
    }
}
