//! Ready messages of one queue: FIFO per priority level (one level unless x-max-priority), with
//! the count and body bytes that length limits look at.
//!
//! Each level is a head (next to deliver), a paged-out region (on disk only, see `paged`) and a
//! tail (recent publishes), in position order. A queue without a pager, or one within its
//! window, keeps everything in the head.

use super::paged::{pageable, LevelFilter, Pager, Region};
use super::QueuedMessage;
use std::collections::VecDeque;

#[derive(Debug, Default)]
struct Level {
    head: VecDeque<QueuedMessage>,
    paged: Region,
    tail: VecDeque<QueuedMessage>,
    /// Body bytes of `head` and `tail`.
    ram_bytes: u64,
}

impl Level {
    fn is_empty(&self) -> bool {
        self.head.is_empty() && self.paged.is_empty() && self.tail.is_empty()
    }

    fn ram_len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// The next message, if it is in memory.
    fn front(&self) -> Option<&QueuedMessage> {
        match self.head.front() {
            Some(e) => Some(e),
            None if self.paged.is_empty() => self.tail.front(),
            None => None,
        }
    }
}

#[derive(Debug)]
pub struct Ready {
    /// Index = priority level; dequeue from the highest non-empty level.
    levels: Vec<Level>,
    len: usize,
    bytes: u64,
    pager: Option<Pager>,
    /// Positions below this were restored at boot: read back, they are redelivered again.
    restored_below: u64,
}

fn size(e: &QueuedMessage) -> u64 {
    e.message.body.len() as u64
}

impl Ready {
    pub fn new(max_priority: Option<u8>, pager: Option<Pager>) -> Ready {
        let levels = usize::from(max_priority.unwrap_or(0)) + 1;
        Ready {
            levels: (0..levels).map(|_| Level::default()).collect(),
            len: 0,
            bytes: 0,
            pager,
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

    /// Ready messages (and their body bytes) paged out to the store.
    pub fn paged(&self) -> (usize, u64) {
        let n = self.levels.iter().map(|l| l.paged.count).sum();
        (n, self.levels.iter().map(|l| l.paged.bytes).sum())
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
        if lv.paged.is_empty() && lv.tail.is_empty() {
            lv.head.push_back(e);
        } else {
            lv.tail.push_back(e);
        }
        self.page_out(l);
    }

    /// At boot: leave a message of `priority` at `seq` on disk if its level's head is full and
    /// nothing is in memory behind the paged region (false: the caller loads it instead).
    pub fn restore_paged(&mut self, seq: u64, priority: u8, size: u64) -> bool {
        let Some(pager) = &self.pager else {
            return false;
        };
        let head = pager.paging.head_messages();
        let l = usize::from(priority).min(self.levels.len() - 1);
        let lv = &mut self.levels[l];
        if !lv.tail.is_empty() || (lv.paged.is_empty() && lv.head.len() < head) {
            return false;
        }
        lv.paged.add(seq, size);
        self.len += 1;
        self.bytes += size;
        true
    }

    /// A new window (a policy changed it): what is over it pages out now.
    pub fn set_paging(&mut self, paging: super::paged::Paging) {
        match &mut self.pager {
            Some(p) if p.paging != paging => p.paging = paging,
            _ => return,
        }
        self.page_out_all();
    }

    /// Page out every level (what became durable since it was published).
    pub fn page_out_all(&mut self) {
        if self.pager.is_some() {
            for l in 0..self.levels.len() {
                self.page_out(l);
            }
        }
    }

    /// Over the window: the oldest of the tail leave memory while they may.
    fn page_out(&mut self, l: usize) {
        let Some(pager) = &self.pager else {
            return;
        };
        let p = pager.paging;
        let own = pager.own_records;
        let restored_below = self.restored_below;
        let lv = &mut self.levels[l];
        if lv.ram_len() <= p.ram_messages && lv.ram_bytes <= p.ram_bytes {
            return;
        }
        if lv.paged.is_empty() && lv.tail.is_empty() {
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
            match lv.tail.front() {
                Some(e) if pageable(e, restored_below, own) => {}
                _ => break,
            }
            if let Some(e) = lv.tail.pop_front() {
                lv.ram_bytes -= size(&e);
                lv.paged.add(e.seq, size(&e));
            }
        }
    }

    /// Refill a head that runs low from the paged region (or, once that is empty, take the
    /// tail into it). Reads happen under the queue's lock, one batch in position order.
    fn refill(&mut self, l: usize) {
        let filter = self.filter(l);
        let restored_below = self.restored_below;
        let lv = &mut self.levels[l];
        if lv.paged.is_empty() {
            if lv.head.is_empty() {
                std::mem::swap(&mut lv.head, &mut lv.tail);
            }
            return;
        }
        let Some(pager) = &self.pager else {
            return;
        };
        if lv.head.len() >= pager.paging.low_water() {
            return;
        }
        let back = match pager.read(&lv.paged, pager.paging.batch(), filter, restored_below) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(queue = ?pager.key, error = %e, "cannot read paged messages");
                return;
            }
        };
        let next = back.next;
        lv.paged.first = next;
        for e in back.messages {
            lv.paged.count = lv.paged.count.saturating_sub(1);
            lv.paged.bytes = lv.paged.bytes.saturating_sub(size(&e));
            lv.ram_bytes += size(&e);
            lv.head.push_back(e);
        }
        let mut lost = back.missing.min(lv.paged.count);
        lv.paged.count -= lost;
        if next > lv.paged.last || lv.paged.count == 0 {
            // Whatever the count still says is not on disk (damaged records): let it go.
            lost += lv.paged.count;
            self.bytes -= lv.paged.bytes.min(self.bytes);
            lv.paged = Region::default();
            lv.head.append(&mut lv.tail);
        }
        self.len -= lost.min(self.len);
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
        if self.levels[l].head.is_empty() {
            self.refill(l);
        }
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
                    self.refill(l);
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
    pub fn peek(&self, count: usize) -> Vec<QueuedMessage> {
        let mut out = Vec::new();
        for (l, lv) in self.levels.iter().enumerate().rev() {
            out.extend(lv.head.iter().take(count - out.len()).cloned());
            if let (Some(pager), false) = (&self.pager, lv.paged.is_empty()) {
                let want = count - out.len();
                let filter = self.filter(l);
                if let Ok(back) = pager.read(&lv.paged, want, filter, self.restored_below) {
                    out.extend(back.messages);
                }
            }
            out.extend(lv.tail.iter().take(count - out.len()).cloned());
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
            if let (Some(pager), false) = (&self.pager, lv.paged.is_empty()) {
                if pager.own_records && (deleting || filters[l].is_none()) {
                    // Records live with their entries: nothing to read or list. A deletion
                    // drops the files; a purge removes the range.
                    paged.count += lv.paged.count;
                    if !deleting {
                        paged.ranges.push((lv.paged.first, lv.paged.last));
                    }
                } else {
                    match pager.entries(&lv.paged, filters[l]) {
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
            lv.paged = Region::default();
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
