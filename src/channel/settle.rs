//! basic.ack / nack / reject / recover: which deliveries a tag names (RabbitMQ's rules),
//! and settling them now or at tx.commit.

use super::{Channel, Cx, Unacked};
use crate::error::{AmqpError, AmqpResult};
use crate::queue::Return;

pub(super) enum Settle {
    Ack,
    Requeue,
    Discard,
}

impl Channel {
    pub(super) fn recover(&mut self, requeue: bool, cx: &mut Cx<'_>) -> AmqpResult<()> {
        if !requeue {
            return Err(AmqpError::not_implemented("requeue=false"));
        }
        let all = std::mem::take(&mut self.unacked);
        self.requeue_unacked(all.into_values(), Return::ByClient, cx.fx);
        Ok(())
    }

    /// Remove the deliveries an ack/nack/reject names, with RabbitMQ's rules
    /// (rabbit_channel:collect_acks): tag 0 with multiple means everything outstanding.
    pub(super) fn take_settled(
        &mut self,
        tag: u64,
        multiple: bool,
    ) -> AmqpResult<Vec<(u64, Unacked)>> {
        let unknown = || AmqpError::precondition_failed(format!("unknown delivery tag {tag}"));
        if multiple {
            if tag == 0 {
                return Ok(std::mem::take(&mut self.unacked).into_iter().collect());
            }
            // Unknown only if nothing at or beyond the tag is outstanding.
            if self.unacked.range(tag..).next().is_none() {
                return Err(unknown());
            }
            let keep = match self.unacked.contains_key(&tag) {
                true => self.unacked.split_off(&(tag + 1)),
                false => self.unacked.split_off(&tag),
            };
            let taken = std::mem::replace(&mut self.unacked, keep);
            return Ok(taken.into_iter().collect());
        }
        match self.unacked.remove(&tag) {
            Some(u) => Ok(vec![(tag, u)]),
            None => Err(unknown()),
        }
    }

    pub(super) fn settle(&mut self, entries: Vec<(u64, Unacked)>, how: Settle, cx: &mut Cx<'_>) {
        if entries.is_empty() {
            return;
        }
        if let Some(tx) = self.tx.as_mut() {
            tx.settles.push((entries, how));
            return;
        }
        self.apply_settle(entries, how, cx);
    }

    pub(super) fn apply_settle(
        &mut self,
        entries: Vec<(u64, Unacked)>,
        how: Settle,
        cx: &mut Cx<'_>,
    ) {
        match how {
            Settle::Requeue => {
                self.requeue_unacked(entries.into_iter().map(|(_, u)| u), Return::ByClient, cx.fx)
            }
            Settle::Ack | Settle::Discard => {
                let discard = matches!(how, Settle::Discard);
                if !discard {
                    self.count(cx.conn, crate::stats::Stat::Ack, entries.len() as u64);
                }
                let mut channel_reopened = false;
                for (_, u) in entries {
                    if let Some(c) = &u.credit {
                        if c.release(1) {
                            cx.kick(&u.queue);
                        }
                        channel_reopened |= self.channel_credit.release(1);
                    }
                    if discard {
                        u.queue.discard([u.entry], cx.fx);
                    } else {
                        u.queue.count_acks(1);
                        u.queue.settle([u.entry], cx.fx);
                    }
                }
                if channel_reopened {
                    for c in self.consumers.values() {
                        cx.kick(&c.queue);
                    }
                }
            }
        }
    }
}
