//! Ready messages of one queue: FIFO per priority level (one level unless x-max-priority), with
//! the count and body bytes that length limits look at.
//!
//! Each level is a head (next to deliver), a middle on disk only and a tail (recent publishes),
//! in position order. The middle is a list of chunks: stretches paged to the store (`paged`)
//! or spilled to scratch files (`spill`). A queue with neither, or one within its window, keeps
//! everything in the head.

use super::paged::{pageable, LevelFilter, Pager, Paging, Region};
use super::spill::{Pos, Spill, SpillTo};
use super::QueuedMessage;
use std::collections::VecDeque;

/// A stretch of one level's ready messages that lives on disk only, in position order.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// In the store: this level's index entries in the region's range.
    Store(Region),
    /// In the spill files: `region.count` entries of this level from `at` on.
    Spill(Region, Pos),
}

impl Chunk {
    fn region(&self) -> &Region {
        match self {
            Chunk::Store(r) | Chunk::Spill(r, _) => r,
        }
    }
}

#[derive(Debug, Default)]
struct Level {
    head: VecDeque<QueuedMessage>,
    /// What is between head and tail, oldest first: one chunk while everything pages to the
    /// same place, more where stored and spilled messages alternate.
    middle: VecDeque<Chunk>,
    tail: VecDeque<QueuedMessage>,
    /// Body bytes of `head` and `tail`.
    ram_bytes: u64,
}

impl Level {
    fn is_empty(&self) -> bool {
        self.head.is_empty() && self.middle.is_empty() && self.tail.is_empty()
    }

    fn ram_len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// The next message, if it is in memory.
    fn front(&self) -> Option<&QueuedMessage> {
        match self.head.front() {
            Some(e) => Some(e),
            None if self.middle.is_empty() => self.tail.front(),
            None => None,
        }
    }

    /// Add `e` (leaving the tail) to the newest chunk if it goes to the same place, else to a
    /// new one.
    fn page(&mut self, e: &QueuedMessage, spilled_at: Option<Pos>) {
        match (self.middle.back_mut(), spilled_at) {
            (Some(Chunk::Store(r)), None) | (Some(Chunk::Spill(r, _)), Some(_)) => {
                r.add(e.seq, size(e))
            }
            (_, at) => {
                let mut r = Region::default();
                r.add(e.seq, size(e));
                self.middle.push_back(match at {
                    None => Chunk::Store(r),
                    Some(at) => Chunk::Spill(r, at),
                });
            }
        }
        self.ram_bytes -= size(e);
    }
}

#[derive(Debug)]
pub struct Ready {
    /// Index = priority level; dequeue from the highest non-empty level.
    levels: Vec<Level>,
    len: usize,
    bytes: u64,
    /// How much of each level stays in memory.
    paging: Paging,
    /// Where persistent messages page (durable queues).
    pager: Option<Pager>,
    /// Where everything else spills under memory pressure (`spill`), and this queue's spill
    /// files once it spilled: boxed and made at the first spill, as most queues never spill
    /// and an empty queue's size counts (100,000 of them, BENCHMARKS.md).
    spill_to: Option<SpillTo>,
    spill: Option<Box<Spill>>,
    /// Positions below this were restored at boot: read back, they are redelivered again.
    restored_below: u64,
}

fn size(e: &QueuedMessage) -> u64 {
    e.message.body.len() as u64
}

/// What a refill brought back from one chunk.
struct Back {
    messages: Vec<QueuedMessage>,
    /// The chunk's new start: None when nothing of it is left to read.
    rest: Option<Chunk>,
}

impl Ready {
    pub fn new(
        max_priority: Option<u8>,
        paging: Paging,
        pager: Option<Pager>,
        spill: Option<SpillTo>,
    ) -> Ready {
        let levels = usize::from(max_priority.unwrap_or(0)) + 1;
        Ready {
            levels: (0..levels).map(|_| Level::default()).collect(),
            len: 0,
            bytes: 0,
            paging,
            pager,
            spill_to: spill,
            spill: None,
            restored_below: 0,
        }
    }

    /// Which entries of a region's range are level `l`'s (None: there is one level).
    fn filter(&self, l: usize) -> Option<LevelFilter> {
        let levels = self.levels.len();
        (levels > 1).then_some(LevelFilter { level: l, levels })
    }

    fn level(&self, e: &QueuedMessage) -> usize {
        let p = usize::from(e.message.priority());
        p.min(self.levels.len() - 1)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Ready messages (and their body bytes) in memory.
    pub fn ram(&self) -> (usize, u64) {
        let n = self.levels.iter().map(Level::ram_len).sum();
        (n, self.levels.iter().map(|l| l.ram_bytes).sum())
    }

    /// Ready messages (and their body bytes) paged out to the store or spilled.
    pub fn paged(&self) -> (usize, u64) {
        let regions = || {
            self.levels
                .iter()
                .flat_map(|l| l.middle.iter().map(Chunk::region))
        };
        (
            regions().map(|r| r.count).sum(),
            regions().map(|r| r.bytes).sum(),
        )
    }

    /// Positions below `seq` were restored at boot (`u64::MAX` while restoring).
    pub fn set_restored_below(&mut self, seq: u64) {
        self.restored_below = seq;
    }

    fn added(&mut self, l: usize, e: &QueuedMessage) {
        self.len += 1;
        self.bytes += size(e);
        self.levels[l].ram_bytes += size(e);
    }

    fn removed(&mut self, l: usize, e: &QueuedMessage) {
        self.len -= 1;
        self.bytes -= size(e);
        self.levels[l].ram_bytes -= size(e);
    }

    pub fn push_back(&mut self, e: QueuedMessage) {
        let l = self.level(&e);
        self.added(l, &e);
        let lv = &mut self.levels[l];
        if lv.middle.is_empty() && lv.tail.is_empty() {
            lv.head.push_back(e);
        } else {
            lv.tail.push_back(e);
        }
        self.page_out(l);
    }

    /// At boot: leave a message of `priority` at `seq` on disk if its level's head is full and
    /// nothing is in memory behind the paged region (false: the caller loads it instead).
    pub fn restore_paged(&mut self, seq: u64, priority: u8, size: u64) -> bool {
        if self.pager.is_none() {
            return false;
        }
        let head = self.paging.head_messages();
        let l = usize::from(priority).min(self.levels.len() - 1);
        let lv = &mut self.levels[l];
        if !lv.tail.is_empty() || (lv.middle.is_empty() && lv.head.len() < head) {
            return false;
        }
        match lv.middle.back_mut() {
            Some(Chunk::Store(r)) => r.add(seq, size),
            Some(Chunk::Spill(..)) => return false,
            None => {
                let mut r = Region::default();
                r.add(seq, size);
                lv.middle.push_back(Chunk::Store(r));
            }
        }
        self.len += 1;
        self.bytes += size;
        true
    }

    /// A new window (a policy changed it): what is over it pages out now.
    pub fn set_paging(&mut self, paging: Paging) {
        if self.paging == paging {
            return;
        }
        self.paging = paging;
        self.page_out_all();
    }

    /// Page out every level (what became durable since it was published, or what may spill
    /// now that memory is short).
    pub fn page_out_all(&mut self) {
        if self.pager.is_some() || self.spill_to.is_some() {
            for l in 0..self.levels.len() {
                self.page_out(l);
            }
        }
    }

    /// Over the window: the oldest of the tail leave memory while they may.
    fn page_out(&mut self, l: usize) {
        let p = self.paging;
        let lv = &self.levels[l];
        if lv.ram_len() <= p.ram_messages && lv.ram_bytes <= p.ram_bytes {
            return;
        }
        let spilling = self.spill_to.as_ref().is_some_and(|s| s.active(p.explicit));
        if self.pager.is_none() && !spilling {
            return;
        }
        let own = self.pager.as_ref().is_some_and(|p| p.own_records);
        let stored = self.pager.is_some();
        let restored_below = self.restored_below;
        let lv = &mut self.levels[l];
        if lv.middle.is_empty() && lv.tail.is_empty() {
            // First time over: the head keeps the part next to deliver; the rest is the tail.
            let (mut keep, mut bytes) = (0, 0);
            for e in &lv.head {
                if keep >= p.head_messages() || bytes >= p.ram_bytes / 2 {
                    break;
                }
                keep += 1;
                bytes += size(e);
            }
            lv.tail = lv.head.split_off(keep.max(1));
        }
        while lv.tail.len() > p.tail_messages() || (lv.ram_bytes > p.ram_bytes && lv.tail.len() > 1)
        {
            let Some(e) = lv.tail.front() else { break };
            let spilled_at = if stored && pageable(e, restored_below, own) {
                None
            } else if spilling && (!stored || e.message.store_id == 0) {
                // A stored message holds this queue's reference to its record: it waits to
                // become durable and page to the store instead.
                let Some(to) = &self.spill_to else {
                    break;
                };
                let spill = self
                    .spill
                    .get_or_insert_with(|| Box::new(Spill::new(to.clone())));
                match spill.append(l, e) {
                    Ok(at) => Some(at),
                    Err(err) => {
                        tracing::error!(error = %err, "cannot spill messages; they stay in memory");
                        break;
                    }
                }
            } else {
                break;
            };
            if let Some(e) = lv.tail.pop_front() {
                lv.page(&e, spilled_at);
            }
        }
    }

    /// Read the next batch of level `l`'s oldest chunk.
    fn read_chunk(&mut self, l: usize, chunk: Chunk, want: usize, consume: bool) -> Back {
        let cap = self.paging.read_bytes();
        let filter = self.filter(l);
        match chunk {
            Chunk::Store(region) => {
                let Some(pager) = &self.pager else {
                    return Back {
                        messages: Vec::new(),
                        rest: None,
                    };
                };
                match pager.read(&region, want, filter, self.restored_below, cap) {
                    Ok(back) => {
                        let mut rest = region;
                        rest.first = back.next;
                        rest.count = rest
                            .count
                            .saturating_sub(back.messages.len() + back.missing);
                        rest.bytes = rest
                            .bytes
                            .saturating_sub(back.messages.iter().map(size).sum());
                        let left = back.next <= region.last && rest.count > 0;
                        Back {
                            messages: back.messages,
                            rest: left.then_some(Chunk::Store(rest)),
                        }
                    }
                    Err(e) => {
                        tracing::error!(queue = ?pager.key, error = %e, "cannot read paged messages");
                        Back {
                            messages: Vec::new(),
                            rest: Some(chunk),
                        }
                    }
                }
            }
            Chunk::Spill(region, at) => {
                let Some(spill) = self.spill.as_mut() else {
                    return Back {
                        messages: Vec::new(),
                        rest: None,
                    };
                };
                let avg = region.bytes / region.count.max(1) as u64;
                let back = spill.read(l, at, want.min(region.count), cap, avg);
                if consume {
                    spill.release(l, back.next);
                }
                let mut rest = region;
                rest.count -= back.messages.len().min(rest.count);
                rest.bytes = rest
                    .bytes
                    .saturating_sub(back.messages.iter().map(size).sum());
                let left = !back.broken && rest.count > 0;
                Back {
                    messages: back.messages,
                    rest: left.then_some(Chunk::Spill(rest, back.next)),
                }
            }
        }
    }

    /// Refill a head that runs low from the oldest chunk (or, once nothing is paged, take the
    /// tail into it). Reads happen under the queue's lock, one batch in position order.
    fn refill(&mut self, l: usize) {
        let Some(&chunk) = self.levels[l].middle.front() else {
            let lv = &mut self.levels[l];
            if lv.head.is_empty() {
                std::mem::swap(&mut lv.head, &mut lv.tail);
            }
            return;
        };
        if self.levels[l].head.len() >= self.paging.low_water() {
            return;
        }
        let back = self.read_chunk(l, chunk, self.paging.batch(), true);
        let before = *chunk.region();
        let (left, left_bytes) = back
            .rest
            .as_ref()
            .map_or((0, 0), |c| (c.region().count, c.region().bytes));
        let got_bytes: u64 = back.messages.iter().map(size).sum();
        // What the chunk counted and neither came back nor is left (damaged records) is gone.
        let lost = before.count.saturating_sub(left + back.messages.len());
        let lost_bytes = before.bytes.saturating_sub(left_bytes + got_bytes);
        let lv = &mut self.levels[l];
        lv.ram_bytes += got_bytes;
        lv.head.extend(back.messages);
        match back.rest {
            Some(rest) => {
                if let Some(front) = lv.middle.front_mut() {
                    *front = rest;
                }
            }
            None => {
                lv.middle.pop_front();
                if lv.middle.is_empty() {
                    lv.head.append(&mut lv.tail);
                }
                let spilled = |c: &Chunk| matches!(c, Chunk::Spill(..));
                if spilled(&chunk) && !lv.middle.iter().any(spilled) {
                    if let Some(s) = self.spill.as_mut() {
                        s.clear(l);
                    }
                }
            }
        }
        self.len -= lost.min(self.len);
        self.bytes -= lost_bytes.min(self.bytes);
    }

    /// Refill until the head has something or nothing more can come back.
    fn fill_head(&mut self, l: usize) {
        while self.levels[l].head.is_empty() && !self.levels[l].middle.is_empty() {
            let chunks = self.levels[l].middle.len();
            let front = self.levels[l].middle.front().map(|c| *c.region());
            self.refill(l);
            let lv = &self.levels[l];
            let same = lv.middle.len() == chunks
                && lv.middle.front().map(|c| *c.region()).is_some_and(|r| {
                    front.is_some_and(|f| f.first == r.first && f.count == r.count)
                });
            if lv.head.is_empty() && same {
                break; // the read failed; it is logged, and the next call tries again
            }
        }
        if self.levels[l].middle.is_empty() {
            self.refill(l);
        }
    }

    /// Back to its original position (by queue sequence) within its priority level.
    pub fn insert_by_seq(&mut self, e: QueuedMessage) {
        let l = self.level(&e);
        self.added(l, &e);
        let lv = &mut self.levels[l];
        // Delivered messages come from the head, so they return there; only a level with
        // nothing paged can have a tail they belong in.
        let list = if lv.tail.front().is_some_and(|t| t.seq < e.seq) {
            &mut lv.tail
        } else {
            &mut lv.head
        };
        let pos = list.partition_point(|m| m.seq < e.seq);
        list.insert(pos, e);
    }

    /// The next message to deliver: highest priority, then oldest.
    pub fn front(&self) -> Option<&QueuedMessage> {
        self.levels
            .iter()
            .rev()
            .find(|l| !l.is_empty())
            .and_then(Level::front)
    }

    pub fn pop_front(&mut self) -> Option<QueuedMessage> {
        let l = (0..self.levels.len())
            .rev()
            .find(|&l| !self.levels[l].is_empty())?;
        self.fill_head(l);
        let e = self.levels[l].head.pop_front()?;
        self.removed(l, &e);
        self.refill(l);
        Some(e)
    }

    /// Put back a message just taken with `pop_front`.
    pub fn push_front(&mut self, e: QueuedMessage) {
        let l = self.level(&e);
        self.added(l, &e);
        self.levels[l].head.push_front(e);
    }

    /// Remove the heads of levels for which `expired` holds (TTL expires at the head only).
    pub fn take_expired_heads(
        &mut self,
        mut expired: impl FnMut(&QueuedMessage) -> bool,
    ) -> Vec<QueuedMessage> {
        let mut out = Vec::new();
        for l in 0..self.levels.len() {
            // One batch read back per level and call: a deep backlog that expired at once goes
            // in steps (the timer comes back at once while the head is still due).
            let mut refilled = false;
            loop {
                if self.levels[l].head.is_empty() {
                    if refilled {
                        break;
                    }
                    self.fill_head(l);
                    refilled = true;
                }
                if !self.levels[l].head.front().is_some_and(&mut expired) {
                    break;
                }
                if let Some(e) = self.levels[l].head.pop_front() {
                    self.removed(l, &e);
                    out.push(e);
                }
            }
            self.refill(l);
        }
        out
    }

    /// Earliest expiry among the level heads.
    pub fn next_expiry(&self) -> Option<u64> {
        self.levels
            .iter()
            .filter_map(|l| l.front()?.expires_at)
            .min()
    }

    /// The first `count` messages in delivery order, left in place (paged ones read back).
    pub fn peek(&mut self, count: usize) -> Vec<QueuedMessage> {
        let mut out = Vec::new();
        for l in (0..self.levels.len()).rev() {
            out.extend(self.levels[l].head.iter().take(count - out.len()).cloned());
            let chunks: Vec<Chunk> = self.levels[l].middle.iter().copied().collect();
            for chunk in chunks {
                let want = count - out.len();
                if want == 0 {
                    break;
                }
                out.extend(self.read_chunk(l, chunk, want, false).messages);
            }
            out.extend(self.levels[l].tail.iter().take(count - out.len()).cloned());
        }
        out
    }

    /// Empty the queue: the messages in memory, and what was paged out. `deleting`: the whole
    /// index goes with the queue.
    pub fn drain(&mut self, deleting: bool) -> (Vec<QueuedMessage>, PagedOut) {
        let filters: Vec<_> = (0..self.levels.len()).map(|l| self.filter(l)).collect();
        self.len = 0;
        self.bytes = 0;
        let mut ram = Vec::new();
        let mut paged = PagedOut::default();
        for (l, lv) in self.levels.iter_mut().enumerate() {
            ram.extend(lv.head.drain(..));
            for chunk in lv.middle.drain(..) {
                let region = match chunk {
                    Chunk::Store(r) => r,
                    Chunk::Spill(r, _) => {
                        // Scratch only: nothing in the store to tell.
                        paged.count += r.count;
                        continue;
                    }
                };
                let Some(pager) = &self.pager else { continue };
                if pager.own_records && (deleting || filters[l].is_none()) {
                    // Records live with their entries: nothing to read or list. A deletion
                    // drops the files; a purge removes the range.
                    paged.count += region.count;
                    if !deleting {
                        paged.ranges.push((region.first, region.last));
                    }
                } else {
                    match pager.entries(&region, filters[l]) {
                        Ok(e) => {
                            paged.count += e.len();
                            paged.entries.extend(e);
                        }
                        Err(e) => {
                            tracing::error!(queue = ?pager.key, error = %e, "cannot read paged messages to remove them")
                        }
                    }
                }
            }
            if let Some(s) = self.spill.as_mut() {
                s.clear(l);
            }
            ram.extend(lv.tail.drain(..));
            lv.ram_bytes = 0;
        }
        (ram, paged)
    }
}

/// What a drained queue had paged out.
#[derive(Debug, Default)]
pub struct PagedOut {
    pub count: usize,
    /// (position, message id) of each, when the store needs them named.
    pub entries: Vec<(u64, u64)>,
    /// Ranges of positions whose entries all go (`store::Op::ForgetRange`).
    pub ranges: Vec<(u64, u64)>,
}
