//! Ready messages of one queue: FIFO per priority level (one level unless x-max-priority), with
//! the count and body bytes that length limits look at.

use super::QueuedMessage;
use std::collections::VecDeque;

#[derive(Debug)]
pub struct Ready {
    /// Index = priority level; dequeue from the highest non-empty level.
    levels: Vec<VecDeque<QueuedMessage>>,
    len: usize,
    bytes: u64,
}

impl Ready {
    pub fn new(max_priority: Option<u8>) -> Ready {
        let levels = usize::from(max_priority.unwrap_or(0)) + 1;
        Ready {
            levels: (0..levels).map(|_| VecDeque::new()).collect(),
            len: 0,
            bytes: 0,
        }
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

    fn added(&mut self, e: &QueuedMessage) {
        self.len += 1;
        self.bytes += e.message.body.len() as u64;
    }

    fn removed(&mut self, e: &QueuedMessage) {
        self.len -= 1;
        self.bytes -= e.message.body.len() as u64;
    }

    pub fn push_back(&mut self, e: QueuedMessage) {
        self.added(&e);
        let l = self.level(&e);
        self.levels[l].push_back(e);
    }

    /// Back to its original position (by queue sequence) within its priority level.
    pub fn insert_by_seq(&mut self, e: QueuedMessage) {
        self.added(&e);
        let l = self.level(&e);
        let level = &mut self.levels[l];
        let pos = level.partition_point(|m| m.seq < e.seq);
        level.insert(pos, e);
    }

    /// The next message to deliver: highest priority, then oldest.
    /// In delivery order (highest priority first, FIFO within a level), without taking any.
    pub fn iter(&self) -> impl Iterator<Item = &QueuedMessage> {
        self.levels.iter().rev().flatten()
    }

    pub fn front(&self) -> Option<&QueuedMessage> {
        self.levels.iter().rev().find_map(|l| l.front())
    }

    pub fn pop_front(&mut self) -> Option<QueuedMessage> {
        let e = self.levels.iter_mut().rev().find_map(|l| l.pop_front())?;
        self.removed(&e);
        Some(e)
    }

    /// Put back a message just taken with `pop_front`.
    pub fn push_front(&mut self, e: QueuedMessage) {
        self.added(&e);
        let l = self.level(&e);
        self.levels[l].push_front(e);
    }

    /// Remove the heads of levels for which `expired` holds (TTL expires at the head only).
    pub fn take_expired_heads(
        &mut self,
        mut expired: impl FnMut(&QueuedMessage) -> bool,
    ) -> Vec<QueuedMessage> {
        let mut out = Vec::new();
        for l in 0..self.levels.len() {
            while self.levels[l].front().is_some_and(&mut expired) {
                if let Some(e) = self.levels[l].pop_front() {
                    out.push(e);
                }
            }
        }
        for e in &out {
            self.removed(e);
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

    pub fn drain(&mut self) -> Vec<QueuedMessage> {
        self.len = 0;
        self.bytes = 0;
        self.levels.iter_mut().flat_map(|l| l.drain(..)).collect()
    }
}
