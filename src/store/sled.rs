//! `SledStore`: definitions and persistent messages in sled 0.34.
//!
//! sled's `flush` ends in sync_file_range, which promises nothing after a crash (man 2
//! sync_file_range; ARCHITECTURE.md, "Decisions"), so each commit is followed by fdatasync of sled's
//! data file. Values above ~128 KiB would go to blob files sled does not sync; message records
//! are therefore cut into 64 KiB chunks. Keys are big-endian integers so they sort.
//!
//! After a failed write sled keeps answering with that error (a full disk stays "full" after
//! space is freed), so a failed commit drops the handles and the next attempt reopens the
//! directory: sled recovers what was flushed, and the committer writes the failed batch again.

use super::StoreErrorKind as Kind;
use super::{
    Batch, Definition, Entry, MessageMeta, QueueKey, Recovered, Store, StoreError, StoreResult,
};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

const CHUNK: usize = 64 * 1024;
const QUEUE_TREE_PREFIX: &[u8] = b"q\0";

#[derive(Debug)]
pub struct SledStore {
    path: PathBuf,
    sync: bool,
    /// None between a failed commit's drop and the reopen that follows.
    db: RwLock<Option<Db>>,
    /// The last commit failed: reopen before the next.
    poisoned: AtomicBool,
    /// `close` was called: never reopen.
    closed: AtomicBool,
}

/// The open database.
#[derive(Debug)]
struct Db {
    path: PathBuf,
    db: sled::Db,
    definitions: sled::Tree,
    messages: sled::Tree,
    queues: Mutex<HashMap<QueueKey, sled::Tree>>,
    /// sled's log file, fdatasync'd after each flush; None with --no-sync.
    data_file: Option<File>,
}

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::at(Kind::Io, path, what, e)
}

fn tree_name(q: &str) -> Vec<u8> {
    let mut n = QUEUE_TREE_PREFIX.to_vec();
    n.extend_from_slice(q.as_bytes());
    n
}

fn chunk_key(id: u64, chunk: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&id.to_be_bytes());
    k[8..].copy_from_slice(&chunk.to_be_bytes());
    k
}

fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

impl SledStore {
    /// Open (or create) the store in `path`. Fails with a clear error when another process
    /// holds the directory or it cannot be read; never resets it.
    pub fn open(path: &Path, sync: bool) -> StoreResult<SledStore> {
        Ok(SledStore {
            path: path.to_path_buf(),
            sync,
            db: RwLock::new(Some(Db::open(path, sync)?)),
            poisoned: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    /// Run `f` on the open database, reopening it first after a failure.
    fn with_db<T>(&self, f: impl FnOnce(&Db) -> StoreResult<T>) -> StoreResult<T> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(StoreError::at(
                Kind::Closed,
                &self.path,
                "store is closed",
                "the broker stopped",
            ));
        }
        if self.poisoned.load(Ordering::Relaxed) {
            let mut w = self.db.write().unwrap_or_else(|p| p.into_inner());
            // Drop the old handles first: sled lets go of the directory's lock with them (its
            // threads may hold it a moment longer; the committer's next retry tries again).
            *w = None;
            *w = Some(Db::open(&self.path, self.sync)?);
            self.poisoned.store(false, Ordering::Relaxed);
            tracing::warn!(path = %self.path.display(), "store reopened after a write error");
        }
        let r = {
            let g = self.db.read().unwrap_or_else(|p| p.into_inner());
            match g.as_ref() {
                Some(db) => f(db),
                // Only between a failed reopen and the next: the committer retries.
                None => Err(StoreError::at(
                    Kind::Io,
                    &self.path,
                    "store is not open",
                    "reopen pending",
                )),
            }
        };
        if r.is_err() {
            self.poisoned.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl Db {
    fn open(path: &Path, sync: bool) -> StoreResult<Db> {
        std::fs::create_dir_all(path)
            .map_err(|e| StoreError::at(Kind::Open, path, "cannot create", e))?;
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(64 * 1024 * 1024)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io)
                    if io.kind() == io::ErrorKind::WouldBlock
                        || io.to_string().contains("lock") =>
                {
                    StoreError::at(
                        Kind::Locked,
                        path,
                        "cannot lock the store (is another warren using it?)",
                        e,
                    )
                }
                e => StoreError::at(Kind::Open, path, "cannot open the store", e),
            })?;
        let definitions = db
            .open_tree("definitions")
            .map_err(|e| StoreError::at(Kind::Open, path, "cannot open definitions", e))?;
        let messages = db
            .open_tree("messages")
            .map_err(|e| StoreError::at(Kind::Open, path, "cannot open messages", e))?;
        let data_file =
            if sync {
                Some(File::open(path.join("db")).map_err(|e| {
                    StoreError::at(Kind::Open, path, "cannot open sled's data file", e)
                })?)
            } else {
                None
            };
        Ok(Db {
            path: path.to_path_buf(),
            db,
            definitions,
            messages,
            queues: Mutex::new(HashMap::new()),
            data_file,
        })
    }

    fn queue_tree(&self, q: &QueueKey) -> StoreResult<sled::Tree> {
        let mut trees = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = trees.get(q) {
            return Ok(t.clone());
        }
        let t = self
            .db
            .open_tree(tree_name(q.as_str()))
            .map_err(|e| self.err("cannot open queue", e))?;
        trees.insert(q.clone(), t.clone());
        Ok(t)
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        err(&self.path, what, e)
    }

    /// Remove a record's chunks: only a full chunk can have a successor, so most deletes are
    /// one removal instead of a prefix scan.
    fn delete_message(&self, id: u64) -> StoreResult<()> {
        for n in 0u32.. {
            let old = self
                .messages
                .remove(chunk_key(id, n))
                .map_err(|e| self.err("write failed", e))?;
            if old.is_none_or(|v| v.len() < CHUNK) {
                break;
            }
        }
        Ok(())
    }

    /// Remove every chunk of a record, whatever a crash left of it (recovery).
    fn purge_message(&self, id: u64) -> StoreResult<()> {
        for kv in self.messages.scan_prefix(id.to_be_bytes()) {
            let (k, _) = kv.map_err(|e| self.err("read failed", e))?;
            self.messages
                .remove(k)
                .map_err(|e| self.err("write failed", e))?;
        }
        Ok(())
    }

    fn sync(&self) -> StoreResult<()> {
        self.db.flush().map_err(|e| self.err("flush failed", e))?;
        if let Some(f) = &self.data_file {
            f.sync_data().map_err(|e| self.err("fdatasync failed", e))?;
        }
        Ok(())
    }
}

impl SledStore {
    /// Forget every queue index and message record, keeping definitions (the file store took
    /// them over).
    pub fn clear_messages(&self) -> StoreResult<()> {
        self.with_db(|db| {
            for name in db.db.tree_names() {
                if name.starts_with(QUEUE_TREE_PREFIX) {
                    db.db
                        .drop_tree(&name)
                        .map_err(|e| db.err("cannot drop queue", e))?;
                }
            }
            db.queues.lock().unwrap_or_else(|p| p.into_inner()).clear();
            db.messages
                .clear()
                .map_err(|e| db.err("cannot clear messages", e))?;
            db.sync()
        })
    }
}

impl Store for SledStore {
    fn commit(&self, batch: &Batch) -> StoreResult<()> {
        self.with_db(|db| db.commit(batch))
    }

    fn recover(&self) -> StoreResult<Recovered> {
        self.with_db(Db::recover)
    }

    fn index_range(
        &self,
        q: &QueueKey,
        from: u64,
        to: u64,
        limit: usize,
    ) -> StoreResult<Vec<Entry>> {
        self.with_db(|db| {
            let tree = db.queue_tree(q)?;
            let mut out = Vec::new();
            for kv in tree
                .range(from.to_be_bytes()..=to.to_be_bytes())
                .take(limit)
            {
                let (k, v) = kv.map_err(|e| db.err("cannot read queue index", e))?;
                match be_u64(&k).and_then(|seq| MessageMeta::decode(seq, &v)) {
                    Some(e) => out.push(e),
                    None => return Err(db.err("corrupt queue index", format!("{q:?}"))),
                }
            }
            Ok(out)
        })
    }

    fn read_record(&self, id: u64) -> StoreResult<Option<Vec<u8>>> {
        self.with_db(|db| {
            let read = |n: u32| {
                db.messages
                    .get(chunk_key(id, n))
                    .map_err(|e| db.err("cannot read message", e))
            };
            // Point reads, not a prefix scan: most records are one chunk, and only a full
            // chunk can have a successor.
            let Some(first) = read(0)? else {
                return Ok(None);
            };
            let mut out = first.to_vec();
            let mut last_len = first.len();
            let mut n = 1;
            while last_len == CHUNK {
                let Some(next) = read(n)? else { break };
                out.extend_from_slice(&next);
                last_len = next.len();
                n += 1;
            }
            Ok(Some(out))
        })
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let db = self.db.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(db) = db {
            // Flushed already (the broker synced before closing); dropping the handles lets
            // sled release the directory's lock.
            let _ = db.db.flush();
            drop(db);
        }
    }
}

impl Db {
    fn commit(&self, batch: &Batch) -> StoreResult<()> {
        for q in &batch.dropped_queues {
            self.queues
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(q);
            self.db
                .drop_tree(tree_name(q.as_str()))
                .map_err(|e| self.err("cannot drop queue", e))?;
        }
        for (key, def) in &batch.definitions {
            match def {
                Some(def) => {
                    let json = serde_json::to_vec(def)
                        .map_err(|e| self.err("cannot encode definition", e))?;
                    self.definitions.insert(key.as_slice(), json)
                }
                None => self.definitions.remove(key.as_slice()),
            }
            .map_err(|e| self.err("write failed", e))?;
        }
        for (id, data) in &batch.messages {
            let chunks = data.chunks(CHUNK).enumerate();
            for (i, chunk) in chunks {
                let n = u32::try_from(i).map_err(|e| self.err("message too large", e))?;
                self.messages
                    .insert(chunk_key(*id, n), chunk)
                    .map_err(|e| self.err("write failed", e))?;
            }
            if data.is_empty() {
                self.messages
                    .insert(chunk_key(*id, 0), &[][..])
                    .map_err(|e| self.err("write failed", e))?;
            }
        }
        for ((q, seq), id) in &batch.index_puts {
            self.queue_tree(q)?
                .insert(
                    seq.to_be_bytes(),
                    MessageMeta::encode(
                        *id,
                        batch.meta.get(id),
                        batch.expiry.get(&(q.clone(), *seq)).copied(),
                    ),
                )
                .map_err(|e| self.err("write failed", e))?;
        }
        for (q, seq) in &batch.index_removes {
            self.queue_tree(q)?
                .remove(seq.to_be_bytes())
                .map_err(|e| self.err("write failed", e))?;
        }
        for (q, from, to) in &batch.range_removes {
            let tree = self.queue_tree(q)?;
            for kv in tree.range(from.to_be_bytes()..=to.to_be_bytes()) {
                let (k, _) = kv.map_err(|e| self.err("cannot read queue index", e))?;
                tree.remove(k).map_err(|e| self.err("write failed", e))?;
            }
        }
        for id in &batch.message_deletes {
            self.delete_message(*id)?;
        }
        self.sync()
    }

    fn recover(&self) -> StoreResult<Recovered> {
        let mut out = Recovered::default();
        for kv in self.definitions.iter() {
            let (_, v) = kv.map_err(|e| self.err("cannot read definitions", e))?;
            let def: Definition = serde_json::from_slice(&v)
                .map_err(|e| StoreError::at(Kind::Corrupt, &self.path, "corrupt definition", e))?;
            out.definitions.push(def);
        }
        for name in self.db.tree_names() {
            let Some(q) = name.strip_prefix(QUEUE_TREE_PREFIX) else {
                continue;
            };
            let key = QueueKey::from(String::from_utf8_lossy(q).into_owned());
            let tree = self.queue_tree(&key)?;
            let mut entries = Vec::new();
            for kv in tree.iter() {
                let (k, v) = kv.map_err(|e| self.err("cannot read queue index", e))?;
                match be_u64(&k).and_then(|seq| MessageMeta::decode(seq, &v)) {
                    Some(e) => entries.push(e),
                    _ => {
                        return Err(StoreError::at(
                            Kind::Corrupt,
                            &self.path,
                            "corrupt queue index",
                            format!("{key:?}"),
                        ))
                    }
                }
            }
            if !entries.is_empty() {
                out.queues.insert(key, entries);
            }
        }
        // Referenced ids, sorted: one pass over the records (in id order) finds orphans and
        // missing records with 9 bytes per id, not a hash set.
        let mut referenced: Vec<(u64, bool)> = out
            .queues
            .values()
            .flatten()
            .map(|e| (e.id, e.meta.is_none()))
            .collect();
        referenced.sort_unstable();
        // One per id; its record is loaded if any of its entries lacks metadata.
        referenced.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 |= later.1;
            }
            same
        });
        let mut seen = vec![false; referenced.len()];
        let mut messages: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let mut orphans = Vec::new();
        let mut j = 0;
        for kv in self.messages.iter() {
            let (k, v) = kv.map_err(|e| self.err("cannot read messages", e))?;
            let id = be_u64(&k).ok_or_else(|| self.err("corrupt message key", ""))?;
            while referenced.get(j).is_some_and(|(r, _)| *r < id) {
                j += 1;
            }
            match referenced.get(j) {
                Some(&(r, load)) if r == id => {
                    seen[j] = true;
                    if load {
                        messages.entry(id).or_default().extend_from_slice(&v);
                    }
                }
                _ if orphans.last() != Some(&id) => orphans.push(id),
                _ => {}
            }
        }
        // Half-written publishes (a record whose index entries never landed) and records whose
        // last reference was removed before a crash.
        for id in orphans {
            self.purge_message(id)?;
        }
        // Index entries whose record is missing cannot be delivered; drop them.
        let present = |id: u64| {
            referenced
                .binary_search_by_key(&id, |(r, _)| *r)
                .is_ok_and(|i| seen[i])
        };
        for (q, entries) in out.queues.iter_mut() {
            let tree = self.queue_tree(q)?;
            entries.retain(|e| {
                let keep = present(e.id);
                if !keep {
                    let _ = tree.remove(e.seq.to_be_bytes());
                }
                keep
            });
        }
        out.queues.retain(|_, e| !e.is_empty());
        out.messages = messages;
        self.sync()?;
        Ok(out)
    }
}
