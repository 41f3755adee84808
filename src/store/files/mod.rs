//! `FileStore`: durable queues' messages in per-queue segment files; definitions in sled.
//!
//! Each durable queue (and delayed exchange) has a directory under `<data dir>/queues/`, named
//! by a hash of its storage key. An index entry and its record are written together, appended
//! to the segment file of the entry's position (`format::SEG` positions per file); an ack is
//! appended to that segment's ack file. A segment whose positions are all acked is deleted as
//! a whole once a newer one exists. In memory each segment keeps its two lengths and a
//! 512-byte bitmap of live positions, so memory does not grow with a queue's depth in
//! messages, only in segments (BENCHMARKS.md, issue 16: sled held 15–20 MiB per million index
//! entries, which no cache setting bounds).
//!
//! A message routed to several durable queues is written once per queue (as LavinMQ does):
//! the record lives and dies with its entries, so there are no reference counts to keep on
//! disk and no compaction; `Batch::messages` only supplies the bytes of the entries.
//!
//! A commit writes every touched file at its last durable length (cutting whatever a failed
//! attempt left), syncs them, and only then updates the lengths and bitmaps readers use.
//! Directories of data directories written by the sled-only store are migrated at boot.

pub mod format;
pub mod queue;
#[cfg(test)]
mod tests;

use self::format::{Bits, SEG};
use self::queue::{QueueDir, Seg};
use super::sled::SledStore;
use super::StoreErrorKind as Kind;
use super::{Batch, Entry, MessageMeta, QueueKey, Recovered, Store, StoreError, StoreResult};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

#[derive(Debug)]
pub struct FileStore {
    /// Definitions (and, until migrated, an older directory's messages).
    sled: SledStore,
    root: PathBuf,
    sync: bool,
    /// By storage key.
    queues: Mutex<HashMap<Box<str>, QueueDir>>,
    /// `close` was called: another broker may own the directory now.
    closed: AtomicBool,
}

fn io_err(path: &Path, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::at(Kind::Io, path, what, e)
}

/// A queue's directory name: its storage key hashed (names may hold any byte).
fn dir_name(key: &str) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(key.as_bytes());
    hash.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// What one commit writes to one segment.
#[derive(Default)]
struct Write {
    entries: Vec<u8>,
    acks: Vec<u8>,
    puts: Vec<u64>,
    removes: Vec<u64>,
    /// Durable lengths before this commit (where the writes go).
    len: u64,
    ack_len: u64,
    new: bool,
    /// Nothing in the segment stays live: delete it (durably) rather than write acks.
    drop: bool,
}

impl FileStore {
    pub fn open(path: &Path, sync: bool) -> StoreResult<FileStore> {
        let sled = SledStore::open(path, sync)?;
        let root = path.join("queues");
        fs::create_dir_all(&root)
            .map_err(|e| StoreError::at(Kind::Open, path, "cannot create queues/", e))?;
        Ok(FileStore {
            sled,
            root,
            sync,
            queues: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, QueueDir>> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dir_of(&self, q: &str) -> Option<PathBuf> {
        self.lock().get(q).map(|d| d.dir.clone())
    }

    /// Create a queue's directory, named, durably.
    fn create_queue_dir(&self, key: &str) -> std::io::Result<PathBuf> {
        let dir = self.root.join(dir_name(key));
        // Anything there is left from a failed attempt or an interrupted migration.
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::create_dir_all(&dir)?;
        let name = dir.join(queue::NAME_FILE);
        fs::write(&name, key.as_bytes())?;
        if self.sync {
            fs::File::open(&name)?.sync_all()?;
            queue::sync_dir(&dir)?;
            queue::sync_dir(&self.root)?;
        }
        Ok(dir)
    }

    fn commit_files(&self, batch: &Batch) -> StoreResult<()> {
        // 1. Dropped queues go first: a namesake declared after in this batch starts afresh.
        for q in &batch.dropped_queues {
            let gone = self.lock().remove(q.as_str());
            let dir = gone.map_or_else(|| self.root.join(dir_name(q.as_str())), |d| d.dir);
            match fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_err(&dir, "cannot delete a queue's files", e));
                }
                _ => {}
            }
        }
        // Boot replays every queue it knows; one it did not is replayed before a write.
        let unreplayed: Vec<QueueKey> = {
            let queues = self.lock();
            let touched = batch
                .index_puts
                .keys()
                .map(|(q, _)| q)
                .chain(batch.index_removes.iter().map(|(q, _)| q));
            touched
                .filter(|q| {
                    queues
                        .get(q.as_str())
                        .is_some_and(|d| !d.unreplayed.is_empty())
                })
                .cloned()
                .collect()
        };
        for q in unreplayed {
            self.replay_entries(&q, &mut |_| Ok(()))?;
        }
        // 2. Plan, per queue and segment, under the lock: where each write goes.
        let mut plan: BTreeMap<&str, BTreeMap<u64, Write>> = BTreeMap::new();
        for ((q, seq), id) in &batch.index_puts {
            let Some(record) = batch.messages.get(id).or_else(|| batch.rewrites.get(id)) else {
                tracing::error!(queue = ?q, seq, id, "index entry without its record; skipped");
                continue;
            };
            let meta = batch.meta.get(id).copied().unwrap_or_default();
            let expiry = batch.expiry.get(&(q.clone(), *seq)).copied();
            let w = plan
                .entry(q.as_str())
                .or_default()
                .entry(seq / SEG)
                .or_default();
            format::encode_entry(&mut w.entries, *seq, *id, &meta, expiry, record);
            w.puts.push(*seq);
        }
        let mut new_dirs = Vec::new();
        {
            let queues = self.lock();
            // What stays live in each touched segment, as the removes are planned.
            let mut left: HashMap<(&str, u64), Bits> = HashMap::new();
            for (q, seq) in &batch.index_removes {
                let k = seq / SEG;
                let Some(s) = queues.get(q.as_str()).and_then(|d| d.segs.get(&k)) else {
                    continue;
                };
                let bits = left
                    .entry((q.as_str(), k))
                    .or_insert_with(|| s.live.clone());
                // Only positions live on disk (an entry never written has nothing to ack).
                if bits.clear(*seq) {
                    let w = plan.entry(q.as_str()).or_default().entry(k).or_default();
                    w.removes.push(*seq);
                }
            }
            // A purged stretch: its whole segments are deleted without a look inside (unless
            // it is a queue's newest, or gets writes in this commit), its ends acked.
            for (q, from, to) in &batch.range_removes {
                let Some(d) = queues.get(q.as_str()) else {
                    continue;
                };
                let newest = d.segs.keys().next_back().copied();
                for (k, s) in d.segs.range(from / SEG..=to / SEG) {
                    let k = *k;
                    let whole = k * SEG >= *from && (k + 1) * SEG - 1 <= *to;
                    let w = plan.entry(q.as_str()).or_default().entry(k).or_default();
                    if whole && Some(k) != newest && w.puts.is_empty() {
                        w.drop = true;
                        continue;
                    }
                    let bits = left
                        .entry((q.as_str(), k))
                        .or_insert_with(|| s.live.clone());
                    let gone: Vec<u64> = bits
                        .positions(k)
                        .filter(|seq| seq >= from && seq <= to)
                        .collect();
                    for seq in gone {
                        bits.clear(seq);
                        w.removes.push(seq);
                    }
                }
            }
            for (q, segs) in plan.iter_mut() {
                let d = queues.get(*q);
                if d.is_none() {
                    new_dirs.push(*q);
                }
                let newest = segs
                    .keys()
                    .next_back()
                    .copied()
                    .max(d.and_then(|d| d.segs.keys().next_back().copied()));
                for (k, w) in segs.iter_mut() {
                    match d.and_then(|d| d.segs.get(k)) {
                        Some(s) => (w.len, w.ack_len) = (s.len, s.ack_len),
                        None => w.new = true,
                    }
                    // A segment this commit empties (a purge, the last acks of a drained
                    // stretch) is deleted instead of acked entry by entry.
                    w.drop = w.drop
                        || (w.puts.is_empty()
                            && Some(*k) != newest
                            && left.get(&(*q, *k)).is_some_and(|b| b.count() == 0));
                    if w.drop {
                        continue;
                    }
                    // Each ack names the entry before this commit's writes (see `format`).
                    for seq in &w.removes {
                        format::encode_ack(&mut w.acks, *seq, w.len);
                    }
                }
            }
        }
        // 3. Write and sync, outside the lock (readers keep reading durable lengths).
        let mut dirs: HashMap<&str, PathBuf> = HashMap::new();
        for q in new_dirs {
            let dir = self
                .create_queue_dir(q)
                .map_err(|e| io_err(&self.root, "cannot create a queue's directory", e))?;
            self.lock().insert(
                q.into(),
                QueueDir {
                    dir: dir.clone(),
                    segs: BTreeMap::new(),
                    unreplayed: Vec::new(),
                },
            );
            dirs.insert(q, dir);
        }
        for q in plan.keys() {
            if !dirs.contains_key(q) {
                if let Some(d) = self.dir_of(q) {
                    dirs.insert(q, d);
                }
            }
        }
        for (q, segs) in &plan {
            let Some(dir) = dirs.get(q) else { continue };
            let mut created = false;
            for (k, w) in segs {
                if w.drop {
                    for p in [queue::seg_path(dir, *k), queue::ack_path(dir, *k)] {
                        match fs::remove_file(&p) {
                            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                                return Err(io_err(dir, "cannot delete a queue segment", e));
                            }
                            _ => {}
                        }
                    }
                    // At once: a retry after a later failure must see it gone.
                    if let Some(d) = self.lock().get_mut(*q) {
                        d.segs.remove(k);
                    }
                    // Made durable below with the directory: its acks were not written.
                    created = true;
                    continue;
                }
                let write = |path: PathBuf, at: u64, bytes: &[u8]| -> std::io::Result<()> {
                    let f = queue::open_at(&path, at)?;
                    f.write_all_at(bytes, at)?;
                    if self.sync {
                        f.sync_data()?;
                    }
                    Ok(())
                };
                if !w.entries.is_empty() {
                    write(queue::seg_path(dir, *k), w.len, &w.entries)
                        .map_err(|e| io_err(dir, "cannot write a queue segment", e))?;
                    created |= w.new;
                }
                if !w.acks.is_empty() {
                    created |= w.ack_len == 0;
                    write(queue::ack_path(dir, *k), w.ack_len, &w.acks)
                        .map_err(|e| io_err(dir, "cannot write a queue's acks", e))?;
                }
            }
            if created && self.sync {
                queue::sync_dir(dir)
                    .map_err(|e| io_err(dir, "cannot sync a queue's directory", e))?;
            }
        }
        // 4. Durable: readers may see it now. Segments left with nothing live go, except each
        // queue's newest (publishes still land in it).
        let mut dead = Vec::new();
        {
            let mut queues = self.lock();
            for (q, segs) in plan {
                let Some(d) = queues.get_mut(q) else { continue };
                for (k, w) in segs {
                    if w.drop {
                        continue;
                    }
                    let s = d.segs.entry(k).or_insert_with(Seg::default);
                    s.len = w.len + w.entries.len() as u64;
                    s.ack_len = w.ack_len + w.acks.len() as u64;
                    // An ack is of an older entry than a put at the same position.
                    for seq in w.removes {
                        s.live.clear(seq);
                    }
                    for seq in w.puts {
                        s.live.set(seq);
                    }
                }
                let newest = d.segs.keys().next_back().copied();
                let empty: Vec<u64> = d
                    .segs
                    .iter()
                    .filter(|(k, s)| Some(**k) != newest && s.live.count() == 0)
                    .map(|(k, _)| *k)
                    .collect();
                for k in empty {
                    d.segs.remove(&k);
                    dead.push((d.dir.clone(), k));
                }
            }
        }
        for (dir, k) in dead {
            queue::remove_segment(&dir, k);
        }
        Ok(())
    }

    /// Move an older directory's messages out of sled: every queue's entries with their
    /// records into files, then sled forgets them. Safe to interrupt: sled lets go only after
    /// the files are durable, and a queue's directory is written afresh each time.
    fn migrate(&self, rec: &Recovered) -> StoreResult<usize> {
        let mut moved = 0;
        for (q, entries) in &rec.queues {
            self.lock().remove(q.as_str());
            for chunk in entries.chunks(4096) {
                let mut batch = Batch::default();
                for e in chunk {
                    let record = match rec.messages.get(&e.id) {
                        Some(r) => Some(r.clone()),
                        None => self.sled.read_record(e.id)?,
                    };
                    let Some(record) = record else { continue };
                    let meta = e.meta.or_else(|| {
                        let d = super::record::decode(&record)?;
                        let m = crate::message::Message::from_raw(
                            d.exchange,
                            d.routing_key,
                            &d.raw_properties,
                            d.body,
                        )?;
                        Some(MessageMeta::of(&m))
                    });
                    batch.index_puts.insert((q.clone(), e.seq), e.id);
                    batch.meta.insert(e.id, meta.unwrap_or_default());
                    if let Some(t) = e.expires_at {
                        batch.expiry.insert((q.clone(), e.seq), t);
                    }
                    batch.messages.insert(e.id, record);
                    moved += 1;
                }
                self.commit_files(&batch)?;
            }
        }
        self.sled.clear_messages()?;
        Ok(moved)
    }
}

impl Store for FileStore {
    fn commit(&self, batch: &Batch) -> StoreResult<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(StoreError::at(
                Kind::Closed,
                &self.root,
                "store is closed",
                "the broker stopped",
            ));
        }
        // Definitions first: a queue's files never outlive a crash that lost its declaration
        // the other way round (boot drops files of queues it does not know).
        if !batch.definitions.is_empty() {
            self.sled.commit(&Batch {
                definitions: batch.definitions.clone(),
                ..Batch::default()
            })?;
        }
        self.commit_files(batch)
    }

    fn recover(&self) -> StoreResult<Recovered> {
        let legacy = self.sled.recover()?;
        if !legacy.queues.is_empty() {
            let n = self.migrate(&legacy)?;
            tracing::info!(
                messages = n,
                "moved stored messages from sled to queue files"
            );
        }
        let mut out = Recovered {
            definitions: legacy.definitions,
            lazy: true,
            ..Recovered::default()
        };
        let dirs =
            fs::read_dir(&self.root).map_err(|e| io_err(&self.root, "cannot list queues/", e))?;
        let mut queues = self.lock();
        queues.clear();
        for d in dirs {
            let path = d
                .map_err(|e| io_err(&self.root, "cannot list queues/", e))?
                .path();
            if !path.is_dir() {
                continue;
            }
            let found = queue::open_dir(&path)
                .map_err(|e| StoreError::at(Kind::Corrupt, &path, "cannot open a queue", e))?;
            let Some((name, segs)) = found else {
                continue;
            };
            // Empty ones too: boot drops the files of a queue it does not know.
            out.queues.insert(QueueKey::from(name.clone()), Vec::new());
            queues.insert(
                name.into(),
                QueueDir {
                    dir: path,
                    segs: BTreeMap::new(),
                    unreplayed: segs,
                },
            );
        }
        Ok(out)
    }

    fn shares_records(&self) -> bool {
        false
    }

    fn replay_entries(
        &self,
        q: &QueueKey,
        f: &mut dyn FnMut(&[Entry]) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let (dir, ks) = {
            let mut queues = self.lock();
            let Some(d) = queues.get_mut(q.as_str()) else {
                return Ok(());
            };
            (d.dir.clone(), std::mem::take(&mut d.unreplayed))
        };
        let newest = ks.last().copied();
        for k in ks {
            let (seg, entries) = queue::replay(&dir, k, self.sync).map_err(|e| {
                StoreError::at(Kind::Corrupt, &dir, "cannot replay a queue segment", e)
            })?;
            let dead = Some(k) != newest && seg.live.count() == 0;
            if dead {
                queue::remove_segment(&dir, k);
            } else if let Some(d) = self.lock().get_mut(q.as_str()) {
                d.segs.insert(k, seg);
            }
            if !entries.is_empty() {
                f(&entries)?;
            }
        }
        Ok(())
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.sled.close();
    }

    fn index_range(
        &self,
        q: &QueueKey,
        from: u64,
        to: u64,
        limit: usize,
    ) -> StoreResult<Vec<Entry>> {
        Ok(self
            .read_range_with(q, from, to, limit, u64::MAX, false)?
            .into_iter()
            .map(|(e, _)| e)
            .collect())
    }

    fn read_range(
        &self,
        q: &QueueKey,
        from: u64,
        to: u64,
        limit: usize,
        max_bytes: u64,
    ) -> StoreResult<Vec<(Entry, Option<Vec<u8>>)>> {
        self.read_range_with(q, from, to, limit, max_bytes, true)
    }

    fn read_record(&self, id: u64) -> StoreResult<Option<Vec<u8>>> {
        // Records are found through their entries; only an unmigrated one is found by id.
        self.sled.read_record(id)
    }

    fn read_entry(&self, q: &QueueKey, e: &Entry) -> StoreResult<Option<Vec<u8>>> {
        let Some(dir) = self.dir_of(q.as_str()) else {
            return Ok(None);
        };
        queue::read_one(&dir, e).map_err(|err| io_err(&dir, "cannot read a queue segment", err))
    }
}

impl FileStore {
    #[allow(clippy::too_many_arguments)]
    fn read_range_with(
        &self,
        q: &QueueKey,
        from: u64,
        to: u64,
        limit: usize,
        max_bytes: u64,
        records: bool,
    ) -> StoreResult<Vec<(Entry, Option<Vec<u8>>)>> {
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let mut k = from / SEG;
        while out.len() < limit && (bytes < max_bytes || out.is_empty()) && k <= to / SEG {
            // One segment at a time: its durable length and live positions, then its file.
            let next = {
                let queues = self.lock();
                let Some(d) = queues.get(q.as_str()) else {
                    break;
                };
                d.segs
                    .range(k..=to / SEG)
                    .next()
                    .map(|(k, s)| (*k, s.len, s.live.clone(), d.dir.clone()))
            };
            let Some((sk, len, live, dir)) = next else {
                break;
            };
            let path = queue::seg_path(&dir, sk);
            let found = queue::live_entries(
                &path,
                len,
                &live,
                from,
                to,
                limit - out.len(),
                max_bytes.saturating_sub(bytes),
                records,
            );
            let found = match found {
                Ok(f) => f,
                // Deleted since: nothing in it was live any more.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(io_err(&dir, "cannot read a queue segment", e)),
            };
            for item in found {
                bytes += u64::from(item.0.meta.map_or(0, |m| m.size));
                out.push(item);
            }
            k = sk + 1;
        }
        Ok(out)
    }
}
