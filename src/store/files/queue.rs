//! One durable queue's directory: its segment files (entries with their records, by position
//! range), their ack files, and which positions are live.
//!
//! Only the committer thread writes here; readers (a deep queue paging back, boot) read files
//! up to the lengths the last commit made durable, so they never see a write in progress.

use super::format::{self, Bits, SEG};
use crate::store::Entry;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
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

/// Read `len` bytes of `path` from its start (what the last commit made durable).
pub fn read_prefix(path: &Path, len: u64) -> io::Result<Vec<u8>> {
    let f = File::open(path)?;
    let mut buf = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
    f.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// The live entries of one segment's bytes with positions in `from..=to`, in position order
/// (a position written twice: the later entry), with their records when `records`.
pub fn live_entries(
    buf: &[u8],
    live: &Bits,
    from: u64,
    to: u64,
    records: bool,
) -> Vec<(Entry, Option<Vec<u8>>)> {
    let mut out: Vec<(Entry, Option<Vec<u8>>)> = Vec::new();
    let mut pos = 0usize;
    while let Some((e, rec)) = buf
        .get(pos..)
        .and_then(|b| format::parse_entry(b, pos as u64))
    {
        let size = rec.end;
        if e.seq >= from && e.seq <= to && live.get(e.seq) {
            let record = records.then(|| buf[pos + rec.start..pos + rec.end].to_vec());
            out.push((e, record));
        }
        pos += size;
    }
    // Stable: of two entries at one position the later (written again) comes last and wins.
    out.sort_by_key(|(e, _)| e.seq);
    let mut kept: Vec<(Entry, Option<Vec<u8>>)> = Vec::with_capacity(out.len());
    for item in out {
        match kept.last_mut() {
            Some(last) if last.0.seq == item.0.seq => *last = item,
            _ => kept.push(item),
        }
    }
    kept
}

/// Read the record of entry `e` at its place in the segment file.
pub fn read_one(dir: &Path, e: &Entry) -> io::Result<Option<Vec<u8>>> {
    let f = match File::open(seg_path(dir, e.seq / SEG)) {
        Ok(f) => f,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut prefix = [0u8; format::PREFIX];
    f.read_exact_at(&mut prefix, e.loc)?;
    let Some(size) = format::entry_size(&prefix) else {
        return Ok(None);
    };
    let mut buf = vec![0u8; size];
    f.read_exact_at(&mut buf, e.loc)?;
    Ok(match format::parse_entry(&buf, e.loc) {
        Some((found, rec)) if found.seq == e.seq => {
            buf.truncate(rec.end);
            buf.drain(..rec.start);
            Some(buf)
        }
        _ => None,
    })
}

/// Recover one queue's directory: cut torn tails, replay acks, delete segments with nothing
/// live. Returns the queue's name and its live entries in position order.
pub fn recover(dir: &Path, sync: bool) -> io::Result<Option<(String, QueueDir, Vec<Entry>)>> {
    let name = match fs::read(dir.join(NAME_FILE)) {
        Ok(n) => String::from_utf8(n).map_err(io::Error::other)?,
        // Created, then a crash before it was named: it holds nothing durable.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::remove_dir_all(dir)?;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let mut ks: Vec<(u64, bool)> = Vec::new();
    for f in fs::read_dir(dir)? {
        let f = f?.file_name();
        let f = f.to_string_lossy();
        let parsed = |ext: &str| {
            f.strip_suffix(ext)
                .and_then(|h| u64::from_str_radix(h, 16).ok())
        };
        if let Some(k) = parsed(".seg") {
            ks.push((k, true));
        } else if let Some(k) = parsed(".ack") {
            ks.push((k, false));
        }
    }
    // A segment before its acks (which it reads itself); acks with no segment are left over.
    ks.sort_unstable_by_key(|&(k, is_seg)| (k, !is_seg));
    let mut q = QueueDir {
        dir: dir.to_path_buf(),
        segs: BTreeMap::new(),
    };
    let mut entries = Vec::new();
    for (k, is_seg) in ks {
        if !is_seg {
            if !q.segs.contains_key(&k) {
                // Acks of a segment already gone.
                let _ = fs::remove_file(ack_path(dir, k));
            }
            continue;
        }
        let path = seg_path(dir, k);
        let buf = fs::read(&path)?;
        let mut seg = Seg::default();
        let mut good = 0usize;
        // Where each position's latest entry starts (acks name entries by it).
        let mut latest = vec![u64::MAX; SEG as usize];
        while let Some((e, rec)) = buf
            .get(good..)
            .and_then(|b| format::parse_entry(b, good as u64))
        {
            if e.seq / SEG == k {
                seg.live.set(e.seq);
                latest[(e.seq % SEG) as usize] = good as u64;
            }
            good += rec.end;
        }
        if good < buf.len() {
            tracing::warn!(path = %path.display(), kept = good, dropped = buf.len() - good,
                "queue segment has a torn tail; cut");
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(good as u64)?;
            if sync {
                f.sync_data()?;
            }
        }
        seg.len = good as u64;
        let apath = ack_path(dir, k);
        match fs::read(&apath) {
            Ok(acks) => {
                let (seqs, ok) = format::parse_acks(&acks);
                for (s, before) in seqs {
                    if s / SEG == k && latest[(s % SEG) as usize] < before {
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
        let all = u64::MAX;
        entries.extend(
            live_entries(&buf[..good], &seg.live, 0, all, false)
                .into_iter()
                .map(|(e, _)| e),
        );
        q.segs.insert(k, seg);
    }
    // Segments with nothing live, except the newest (publishes may still land in it).
    let newest = q.segs.keys().next_back().copied();
    let dead: Vec<u64> = q
        .segs
        .iter()
        .filter(|(k, s)| Some(**k) != newest && s.live.count() == 0)
        .map(|(k, _)| *k)
        .collect();
    for k in dead {
        q.segs.remove(&k);
        remove_segment(dir, k);
    }
    Ok(Some((name, q, entries)))
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
