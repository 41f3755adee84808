//! tx.* and confirm.* methods. Transactions buffer publishes and settlements until commit.

use super::settle::Settle;
use super::{Channel, ConfirmState, Cx, Unacked};
use crate::error::{AmqpError, AmqpResult};
use crate::message::Message;
use amq_protocol::protocol::{confirm, tx, AMQPClass};

#[derive(Default)]
pub struct TxState {
    /// Buffered publishes: message, mandatory, CC/BCC routing keys.
    pub(super) publishes: Vec<(Message, bool, Vec<String>)>,
    pub(super) settles: Vec<(Vec<(u64, Unacked)>, Settle)>,
    /// The buffered publishes' bytes, taken from the connection's budget until commit or
    /// rollback.
    pub(super) hold: super::held::Hold,
}

impl std::fmt::Debug for TxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TxState({} publishes, {} settles)",
            self.publishes.len(),
            self.settles.len()
        )
    }
}

impl Channel {
    pub(super) fn tx_method(&mut self, m: tx::AMQPMethod, cx: &mut Cx<'_>) -> AmqpResult<()> {
        use tx::AMQPMethod as M;
        match m {
            M::Select(_) => {
                if self.confirm.is_some() {
                    return Err(AmqpError::precondition_failed(
                        "cannot switch from confirm to tx mode",
                    ));
                }
                if self.tx.is_none() {
                    self.tx = Some(TxState::default());
                }
                cx.send(self.id, AMQPClass::Tx(M::SelectOk(tx::SelectOk {})));
            }
            M::Commit(_) => {
                let Some(state) = self.tx.replace(TxState::default()) else {
                    return Err(AmqpError::precondition_failed(
                        "channel is not transactional",
                    ));
                };
                let mut wait = None;
                for (message, mandatory, keys) in state.publishes {
                    wait = wait.max(
                        self.route_and_enqueue(message, mandatory, &keys, cx)?
                            .ticket,
                    );
                }
                for (entries, how) in state.settles {
                    self.apply_settle(entries, how, cx);
                }
                match wait {
                    // commit-ok is a promise too: it waits until stored messages are durable.
                    Some(ticket) => self.commit_wait = Some(ticket),
                    None => cx.send(self.id, AMQPClass::Tx(M::CommitOk(tx::CommitOk {}))),
                }
            }
            M::Rollback(_) => {
                let Some(state) = self.tx.replace(TxState::default()) else {
                    return Err(AmqpError::precondition_failed(
                        "channel is not transactional",
                    ));
                };
                // Settled-in-transaction deliveries become outstanding again.
                for (entries, _) in state.settles {
                    self.unacked.extend(entries);
                }
                cx.send(self.id, AMQPClass::Tx(M::RollbackOk(tx::RollbackOk {})));
            }
            _ => return Err(AmqpError::command_invalid("unimplemented method")),
        }
        Ok(())
    }

    pub(super) fn confirm_method(
        &mut self,
        m: confirm::AMQPMethod,
        cx: &mut Cx<'_>,
    ) -> AmqpResult<()> {
        match m {
            confirm::AMQPMethod::Select(s) => {
                if self.tx.is_some() {
                    return Err(AmqpError::precondition_failed(
                        "cannot switch from tx to confirm mode",
                    ));
                }
                if self.confirm.is_none() {
                    self.confirm = Some(ConfirmState::default());
                }
                if !s.nowait {
                    cx.send(
                        self.id,
                        AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
                    );
                }
                Ok(())
            }
            _ => Err(AmqpError::command_invalid("unimplemented method")),
        }
    }
}
