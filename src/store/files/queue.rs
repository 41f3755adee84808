//! One durable queue's directory: its segment files (entries with their records, by position
//! range), their ack files, and which positions are live.
//!
//! Only the committer thread writes here; readers (a deep queue paging back, boot) read files
//! up to the lengths the last commit made durable, so they never see a write in progress.

use super::format::{self, Bits, SEG};
use crate::store::Entry;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The file that names the queue a directory belongs to.
pub const NAME_FILE: &str = "name";

/// One segment: the durable lengths of its two files, and its live positions.
#[derive(Debug, Clone, Default)]
pub struct Seg {
    pub len: u64,
    pub ack_len: u64,
    pub live: Bits,
}

#[derive(Debug)]
pub struct QueueDir {
    pub dir: PathBuf,
    pub segs: BTreeMap<u64, Seg>,
    /// Segments found at boot and not replayed yet (`FileStore::replay_entries`).
    pub unreplayed: Vec<u64>,
}

pub fn seg_path(dir: &Path, k: u64) -> PathBuf {
    dir.join(format!("{k:016x}.seg"))
}

pub fn ack_path(dir: &Path, k: u64) -> PathBuf {
    dir.join(format!("{k:016x}.ack"))
}

/// Open `path` for writing at `len`, cutting off anything a failed attempt left beyond it.
pub fn open_at(path: &Path, len: u64) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    if f.metadata()?.len() != len {
        f.set_len(len)?;
    }
    Ok(f)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads a segment file's entries in file order, their headers only unless asked for more.
pub struct Scan {
    r: BufReader<File>,
    /// Where the next entry starts: after a `None`, the length of the good part.
    pub pos: u64,
    end: u64,
    header: [u8; format::HEADER],
}

impl Scan {
    /// Entries in the first `end` bytes of `path` (u64::MAX: to the end of the file).
    pub fn open(path: &Path, end: u64) -> io::Result<Scan> {
        let f = File::open(path)?;
        // Never past the file's end: a damaged length must not size a buffer beyond it.
        let end = end.min(f.metadata()?.len());
        Ok(Scan {
            r: BufReader::with_capacity(256 * 1024, f),
            pos: 0,
            end,
            header: [0; format::HEADER],
        })
    }

    /// The next entry, with its record when `record`; its crc is checked when `record` or
    /// `verify`. None at the end or at a damaged or cut-short entry.
    pub fn next(&mut self, record: bool, verify: bool) -> io::Result<Option<(Entry, Vec<u8>)>> {
        if self.pos + format::HEADER as u64 > self.end {
            return Ok(None);
        }
        match self.r.read_exact(&mut self.header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let Some((entry, crc, rlen)) = format::parse_header(&self.header, self.pos) else {
            return Ok(None);
        };
        let size = (format::HEADER + rlen) as u64;
        if self.pos + size > self.end {
            return Ok(None);
        }
        let mut body = Vec::new();
        if record || verify {
            body.resize(rlen, 0);
            match self.r.read_exact(&mut body) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e),
            }
            if !format::check(&self.header, &body, crc) {
                return Ok(None);
            }
            if !record {
                body = Vec::new();
            }
        } else {
            self.r.seek_relative(rlen as i64)?;
        }
        self.pos += size;
        Ok(Some((entry, body)))
    }
}

/// Of several entries at one position, the one written last; sorted by position.
fn latest<T>(mut v: Vec<T>, entry: impl Fn(&T) -> &Entry) -> Vec<T> {
    v.sort_by_key(|t| (entry(t).seq, entry(t).loc));
    let mut out: Vec<T> = Vec::with_capacity(v.len());
    for t in v {
        match out.last_mut() {
            Some(last) if entry(last).seq == entry(&t).seq => *last = t,
            _ => out.push(t),
        }
    }
    out
}

/// A segment at most this long is read whole for a read-back (one read instead of two per
/// record); a longer one (large messages) is scanned and its records read one by one.
const READ_WHOLE: u64 = 8 << 20;

/// The live entries of a segment (its first `len` bytes) with positions in `from..=to`, in
/// position order: at most `limit`, and no more once their records reach `max_bytes`, with
/// their records when `records`.
#[allow(clippy::too_many_arguments)]
pub fn live_entries(
    path: &Path,
    len: u64,
    live: &Bits,
    from: u64,
    to: u64,
    limit: usize,
    max_bytes: u64,
    records: bool,
) -> io::Result<Vec<(Entry, Option<Vec<u8>>)>> {
    let wanted = |e: &Entry| e.seq >= from && e.seq <= to && live.get(e.seq);
    // Each wanted entry with where it ends.
    let mut found: Vec<(Entry, usize)> = Vec::new();
    let whole = if records && len <= READ_WHOLE {
        let f = File::open(path)?;
        let mut buf = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
        f.read_exact_at(&mut buf, 0)?;
        let mut pos = 0usize;
        while let Some((e, _, rlen)) = buf
            .get(pos..)
            .and_then(|b| format::parse_header(b, pos as u64))
        {
            let end = pos + format::HEADER + rlen;
            if end > buf.len() {
                break;
            }
            if wanted(&e) {
                found.push((e, end));
            }
            pos = end;
        }
        Some(buf)
    } else {
        let mut scan = Scan::open(path, len)?;
        while let Some((e, _)) = scan.next(false, false)? {
            if wanted(&e) {
                found.push((e, scan.pos as usize));
            }
        }
        None
    };
    let file = if records && whole.is_none() {
        Some(File::open(path)?)
    } else {
        None
    };
    let mut out = Vec::new();
    let mut bytes = 0u64;
    for (e, end) in latest(found, |(e, _)| e) {
        if out.len() >= limit || (bytes >= max_bytes && !out.is_empty()) {
            break;
        }
        bytes += u64::from(e.meta.map_or(0, |m| m.size));
        let record = match (&whole, &file) {
            (Some(buf), _) => {
                let at = e.loc as usize;
                buf.get(at..end)
                    .and_then(|b| format::parse_entry(b, e.loc))
                    .map(|(_, r)| buf[at + r.start..at + r.end].to_vec())
            }
            (None, Some(f)) => read_at(f, &e)?,
            (None, None) => None,
        };
        out.push((e, record));
    }
    Ok(out)
}

fn read_at(f: &File, e: &Entry) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; format::HEADER];
    f.read_exact_at(&mut header, e.loc)?;
    let Some((found, crc, rlen)) = format::parse_header(&header, e.loc) else {
        return Ok(None);
    };
    // A damaged length must not size a buffer beyond the file.
    if e.loc + (format::HEADER + rlen) as u64 > f.metadata()?.len() {
        return Ok(None);
    }
    let mut record = vec![0u8; rlen];
    f.read_exact_at(&mut record, e.loc + format::HEADER as u64)?;
    Ok((found.seq == e.seq && format::check(&header, &record, crc)).then_some(record))
}

/// Read the record of entry `e` at its place in the segment file.
pub fn read_one(dir: &Path, e: &Entry) -> io::Result<Option<Vec<u8>>> {
    match File::open(seg_path(dir, e.seq / SEG)) {
        Ok(f) => read_at(&f, e),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// A queue's storage key (names are short: a file over 64 KiB is damage, not read whole).
fn read_name(path: &Path) -> io::Result<String> {
    let mut n = Vec::new();
    File::open(path)?.take(65_537).read_to_end(&mut n)?;
    if n.len() > 65_536 {
        return Err(io::Error::other("queue name file is too long"));
    }
    String::from_utf8(n).map_err(io::Error::other)
}

/// A queue's directory at boot: its name and the segments still to replay (None: the
/// directory was never named, and is removed).
pub fn open_dir(dir: &Path) -> io::Result<Option<(String, Vec<u64>)>> {
    let name = match read_name(&dir.join(NAME_FILE)) {
        Ok(n) => n,
        // Created, then a crash before it was named: it holds nothing durable.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::remove_dir_all(dir)?;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let mut segs = Vec::new();
    for f in fs::read_dir(dir)? {
        let f = f?.file_name();
        let f = f.to_string_lossy();
        if let Some(k) = f
            .strip_suffix(".seg")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        {
            segs.push(k);
        } else if let Some(k) = f
            .strip_suffix(".ack")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        {
            if !dir.join(format!("{k:016x}.seg")).exists() {
                // Acks of a segment already gone.
                let _ = fs::remove_file(ack_path(dir, k));
            }
        }
    }
    segs.sort_unstable();
    Ok(Some((name, segs)))
}

/// Replay one segment at boot: check every entry's crc and cut a torn tail, apply the acks,
/// and return the segment with its live entries in position order.
pub fn replay(dir: &Path, k: u64, sync: bool) -> io::Result<(Seg, Vec<Entry>)> {
    let path = seg_path(dir, k);
    let mut scan = Scan::open(&path, u64::MAX)?;
    let mut seg = Seg::default();
    let mut all = Vec::new();
    while let Some((e, _)) = scan.next(false, true)? {
        if e.seq / SEG == k {
            seg.live.set(e.seq);
            all.push(e);
        }
    }
    let good = scan.pos;
    let size = fs::metadata(&path)?.len();
    if good < size {
        tracing::warn!(path = %path.display(), kept = good, dropped = size - good,
            "queue segment has a torn tail; cut");
        let f = OpenOptions::new().write(true).open(&path)?;
        f.set_len(good)?;
        if sync {
            f.sync_data()?;
        }
    }
    seg.len = good;
    let entries = latest(all, |e| e);
    let apath = ack_path(dir, k);
    match fs::read(&apath) {
        Ok(acks) => {
            let (seqs, ok) = format::parse_acks(&acks);
            for (s, before) in seqs {
                // An ack names the entry of its position that starts before `before`.
                let acked = entries
                    .binary_search_by_key(&s, |e| e.seq)
                    .is_ok_and(|i| entries[i].loc < before);
                if acked {
                    seg.live.clear(s);
                }
            }
            if ok < acks.len() {
                let f = OpenOptions::new().write(true).open(&apath)?;
                f.set_len(ok as u64)?;
            }
            seg.ack_len = ok as u64;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let live: Vec<Entry> = entries
        .into_iter()
        .filter(|e| seg.live.get(e.seq))
        .collect();
    Ok((seg, live))
}

/// Delete a segment's files (nothing in them is live).
pub fn remove_segment(dir: &Path, k: u64) {
    for p in [seg_path(dir, k), ack_path(dir, k)] {
        if let Err(e) = fs::remove_file(&p) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %p.display(), error = %e, "cannot delete a queue segment");
            }
        }
    }
}
