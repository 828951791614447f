//! The life of one read transfer as a pure state machine: given what the client did
//! (ACK n, ERROR, silence), what the server sends next.
//!
//! No sockets, no clock, no file: the socket loop feeds it events and carries out the
//! returned [`Step`]. That keeps the hard parts (block-number wraparound, windows,
//! retransmission, duplicate ACKs, client aborts) testable in microseconds.
//!
//! Blocks are numbered from 1 as `u64` indexes here; on the wire the number is the
//! index modulo 65536, so a file of more than 65535 blocks rolls over to block 0, which
//! is what tftp-hpa, curl and iPXE expect.

/// What the socket loop must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send the OACK (again) and wait for ACK 0.
    SendOptionAck,
    /// Send DATA blocks `first..=last` (1-based indexes), then wait.
    SendData {
        /// First block index to send.
        first: u64,
        /// Last block index to send, inclusive.
        last: u64,
    },
    /// Nothing to send: keep waiting, and keep the retransmission deadline already
    /// running (so a stream of stale ACKs cannot keep a dead transfer alive).
    KeepWaiting,
    /// The client acknowledged the last block: the transfer succeeded.
    Complete,
    /// The retry budget is spent without progress: give up.
    GiveUp,
    /// The client sent an ERROR: stop at once, send nothing.
    ClientAborted,
}

/// Where the transfer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not started yet.
    Idle,
    /// OACK sent, waiting for ACK 0.
    AwaitingOptionAck,
    /// DATA flowing.
    Sending,
    /// Completed, given up or aborted: every further event is ignored.
    Finished,
}

/// State of one read transfer.
#[derive(Debug, Clone)]
pub(crate) struct ReadTransfer {
    /// DATA blocks in the file: size / block size + 1, because the last block is always
    /// shorter than a full block (possibly empty) to mark the end.
    total_blocks: u64,
    /// Blocks sent before waiting for an ACK (RFC 7440; 1 is classic lock-step).
    window_size: u64,
    /// Whether options were accepted, so the transfer opens with an OACK.
    sends_option_ack: bool,
    /// Retransmissions allowed in a row without progress.
    retries: u32,
    /// Retransmissions left before giving up; refilled on every bit of progress.
    retries_left: u32,
    /// Highest block index the client acknowledged (0: none yet).
    acknowledged: u64,
    /// Highest block index sent so far in the current window.
    sent_through: u64,
    /// Where the transfer is.
    phase: Phase,
}

/// Number of DATA blocks needed for `file_size` bytes at `block_size`.
pub(crate) fn total_blocks(file_size: u64, block_size: u16) -> u64 {
    file_size / u64::from(block_size.max(1)) + 1
}

/// The block number carried on the wire for a 1-based block index.
pub(crate) fn wire_block_number(index: u64) -> u16 {
    (index % 65536) as u16
}

impl ReadTransfer {
    /// A transfer of `file_size` bytes. `window_size` 0 is treated as 1.
    pub fn new(
        file_size: u64,
        block_size: u16,
        window_size: u16,
        sends_option_ack: bool,
        retries: u32,
    ) -> Self {
        Self {
            total_blocks: total_blocks(file_size, block_size),
            window_size: u64::from(window_size.max(1)),
            sends_option_ack,
            retries,
            retries_left: retries,
            acknowledged: 0,
            sent_through: 0,
            phase: Phase::Idle,
        }
    }

    /// How far the client has come: `None` while the OACK waits for ACK 0, then
    /// the highest block index acknowledged. It only grows; the driver's stall
    /// limit measures the time since it last did.
    pub(crate) fn progress(&self) -> Option<u64> {
        match self.phase {
            Phase::Idle | Phase::AwaitingOptionAck => None,
            Phase::Sending | Phase::Finished => Some(self.acknowledged),
        }
    }

    /// Whether the transfer has ended (completed, given up or aborted).
    #[cfg(test)]
    pub(crate) fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// The first thing to send.
    pub(crate) fn start(&mut self) -> Step {
        if self.phase != Phase::Idle {
            return Step::KeepWaiting;
        }
        if self.sends_option_ack {
            self.phase = Phase::AwaitingOptionAck;
            Step::SendOptionAck
        } else {
            self.phase = Phase::Sending;
            self.send_window_after(0)
        }
    }

    /// The client acknowledged wire block number `block`.
    pub(crate) fn on_ack(&mut self, block: u16) -> Step {
        match self.phase {
            Phase::Idle | Phase::Finished => Step::KeepWaiting,
            Phase::AwaitingOptionAck if block == 0 => {
                self.phase = Phase::Sending;
                self.retries_left = self.retries;
                self.send_window_after(0)
            }
            Phase::AwaitingOptionAck => Step::KeepWaiting,
            Phase::Sending => {
                let Some(index) = self.outstanding_index(block) else {
                    // A duplicate ACK of the last acknowledged block, or one from an
                    // older window: answering it would double the traffic for good
                    // (the Sorcerer's Apprentice bug of RFC 1350), so it is ignored and
                    // the retransmission timer handles real loss.
                    return Step::KeepWaiting;
                };
                self.acknowledged = index;
                self.retries_left = self.retries;
                if index == self.total_blocks {
                    self.phase = Phase::Finished;
                    return Step::Complete;
                }
                // A full window acknowledged moves on; an ACK inside the window means the
                // client missed the block after it, so (RFC 7440) the next window starts
                // right after the acknowledged block. Both are the same computation.
                self.send_window_after(index)
            }
        }
    }

    /// The retransmission timeout expired without progress.
    pub(crate) fn on_timeout(&mut self) -> Step {
        match self.phase {
            Phase::Idle | Phase::Finished => Step::KeepWaiting,
            _ if self.retries_left == 0 => {
                self.phase = Phase::Finished;
                Step::GiveUp
            }
            Phase::AwaitingOptionAck => {
                self.retries_left -= 1;
                Step::SendOptionAck
            }
            Phase::Sending => {
                self.retries_left -= 1;
                self.send_window_after(self.acknowledged)
            }
        }
    }

    /// The client sent an ERROR (firmware's "tsize probe, then ERROR 8" among others).
    pub(crate) fn on_client_error(&mut self) -> Step {
        if self.phase == Phase::Finished {
            return Step::KeepWaiting;
        }
        self.phase = Phase::Finished;
        Step::ClientAborted
    }

    /// Sends the window that follows block `index`.
    fn send_window_after(&mut self, index: u64) -> Step {
        let first = index + 1;
        let last = index
            .saturating_add(self.window_size)
            .min(self.total_blocks);
        self.sent_through = last;
        Step::SendData { first, last }
    }

    /// The block index in (acknowledged, sent_through] whose wire number is `block`.
    /// Unique because a window never spans more than 65535 blocks.
    fn outstanding_index(&self, block: u16) -> Option<u64> {
        let lowest = self.acknowledged + 1;
        let offset = u64::from(block.wrapping_sub(wire_block_number(lowest)));
        let index = lowest + offset;
        (index <= self.sent_through).then_some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn block_counts_include_the_final_short_block() {
        assert_eq!(total_blocks(0, 512), 1);
        assert_eq!(total_blocks(1, 512), 1);
        assert_eq!(total_blocks(511, 512), 1);
        assert_eq!(total_blocks(512, 512), 2);
        assert_eq!(total_blocks(1024, 512), 3);
        assert_eq!(total_blocks(64 << 20, 512), 131_073);
    }

    #[test]
    fn wire_numbers_roll_over_to_zero() {
        assert_eq!(wire_block_number(1), 1);
        assert_eq!(wire_block_number(65535), 65535);
        assert_eq!(wire_block_number(65536), 0);
        assert_eq!(wire_block_number(65537), 1);
        assert_eq!(wire_block_number(131_073), 1);
    }

    #[test]
    fn lock_step_without_options() {
        let mut transfer = ReadTransfer::new(1000, 512, 1, false, 3);
        assert_eq!(transfer.start(), Step::SendData { first: 1, last: 1 });
        assert_eq!(transfer.on_ack(1), Step::SendData { first: 2, last: 2 });
        assert_eq!(transfer.on_ack(2), Step::Complete);
        assert!(transfer.is_finished());
        assert_eq!(transfer.on_ack(2), Step::KeepWaiting);
    }

    #[test]
    fn empty_file_is_one_empty_block() {
        let mut transfer = ReadTransfer::new(0, 512, 1, false, 3);
        assert_eq!(transfer.start(), Step::SendData { first: 1, last: 1 });
        assert_eq!(transfer.on_ack(1), Step::Complete);
    }

    #[test]
    fn option_ack_waits_for_ack_zero() {
        let mut transfer = ReadTransfer::new(100, 512, 1, true, 3);
        assert_eq!(transfer.start(), Step::SendOptionAck);
        assert_eq!(transfer.on_ack(1), Step::KeepWaiting);
        assert_eq!(transfer.on_timeout(), Step::SendOptionAck);
        assert_eq!(transfer.on_ack(0), Step::SendData { first: 1, last: 1 });
        assert_eq!(transfer.on_ack(1), Step::Complete);
    }

    #[test]
    fn client_error_after_oack_ends_at_once() {
        // The firmware tsize probe: RRQ with tsize, OACK, then ERROR 8.
        let mut transfer = ReadTransfer::new(100, 512, 1, true, 3);
        assert_eq!(transfer.start(), Step::SendOptionAck);
        assert_eq!(transfer.on_client_error(), Step::ClientAborted);
        assert!(transfer.is_finished());
        assert_eq!(transfer.on_timeout(), Step::KeepWaiting);
        assert_eq!(transfer.on_ack(0), Step::KeepWaiting);
    }

    #[test]
    fn client_error_mid_transfer_ends_at_once() {
        let mut transfer = ReadTransfer::new(10_000, 512, 4, false, 3);
        transfer.start();
        assert_eq!(transfer.on_client_error(), Step::ClientAborted);
        assert_eq!(transfer.on_client_error(), Step::KeepWaiting);
    }

    #[test]
    fn duplicate_and_old_acks_are_ignored() {
        let mut transfer = ReadTransfer::new(5000, 512, 1, false, 3);
        transfer.start();
        assert_eq!(transfer.on_ack(1), Step::SendData { first: 2, last: 2 });
        assert_eq!(transfer.on_ack(1), Step::KeepWaiting, "duplicate");
        assert_eq!(transfer.on_ack(0), Step::KeepWaiting, "old");
        assert_eq!(transfer.on_ack(7), Step::KeepWaiting, "future");
        assert_eq!(transfer.on_ack(2), Step::SendData { first: 3, last: 3 });
    }

    #[test]
    fn timeout_resends_from_last_acked_block_and_gives_up_after_retries() {
        let mut transfer = ReadTransfer::new(10 * 512, 512, 4, false, 2);
        assert_eq!(transfer.start(), Step::SendData { first: 1, last: 4 });
        assert_eq!(transfer.on_ack(4), Step::SendData { first: 5, last: 8 });
        assert_eq!(transfer.on_timeout(), Step::SendData { first: 5, last: 8 });
        assert_eq!(transfer.on_timeout(), Step::SendData { first: 5, last: 8 });
        assert_eq!(transfer.on_timeout(), Step::GiveUp);
        assert!(transfer.is_finished());
    }

    #[test]
    fn progress_refills_the_retry_budget() {
        let mut transfer = ReadTransfer::new(10 * 512, 512, 1, false, 1);
        transfer.start();
        assert_eq!(transfer.on_timeout(), Step::SendData { first: 1, last: 1 });
        assert_eq!(transfer.on_ack(1), Step::SendData { first: 2, last: 2 });
        assert_eq!(transfer.on_timeout(), Step::SendData { first: 2, last: 2 });
        assert_eq!(transfer.on_timeout(), Step::GiveUp);
    }

    #[test]
    fn zero_retries_gives_up_on_first_timeout() {
        let mut transfer = ReadTransfer::new(10, 512, 1, true, 0);
        transfer.start();
        assert_eq!(transfer.on_timeout(), Step::GiveUp);
    }

    #[test]
    fn windows_slide_and_the_last_window_is_cut_at_the_end() {
        // 10 full blocks + 1 empty block = 11 blocks, window 4.
        let mut transfer = ReadTransfer::new(10 * 512, 512, 4, true, 3);
        assert_eq!(transfer.start(), Step::SendOptionAck);
        assert_eq!(transfer.on_ack(0), Step::SendData { first: 1, last: 4 });
        assert_eq!(transfer.on_ack(4), Step::SendData { first: 5, last: 8 });
        assert_eq!(transfer.on_ack(8), Step::SendData { first: 9, last: 11 });
        assert_eq!(transfer.on_ack(11), Step::Complete);
    }

    #[test]
    fn ack_inside_the_window_restarts_after_it() {
        // RFC 7440: the client lost block 3 and acknowledged 2, the last in order.
        let mut transfer = ReadTransfer::new(20 * 512, 512, 4, false, 3);
        assert_eq!(transfer.start(), Step::SendData { first: 1, last: 4 });
        assert_eq!(transfer.on_ack(2), Step::SendData { first: 3, last: 6 });
        // A late ACK from the abandoned window is old now.
        assert_eq!(transfer.on_ack(2), Step::KeepWaiting);
        assert_eq!(transfer.on_ack(6), Step::SendData { first: 7, last: 10 });
    }

    #[test]
    fn rollover_beyond_65535_blocks_in_lock_step() {
        // 64 MiB at 512-byte blocks: 131073 blocks, the wire number wraps twice.
        let mut transfer = ReadTransfer::new(64 << 20, 512, 1, false, 3);
        let mut step = transfer.start();
        let mut blocks_sent = 0u64;
        loop {
            match step {
                Step::SendData { first, last } => {
                    assert_eq!(first, last);
                    assert_eq!(first, blocks_sent + 1);
                    blocks_sent = last;
                    // A stale ACK for the block before is ignored even across the wrap.
                    assert_eq!(
                        transfer.on_ack(wire_block_number(last - 1)),
                        Step::KeepWaiting
                    );
                    step = transfer.on_ack(wire_block_number(last));
                }
                Step::Complete => break,
                other => panic!("unexpected step {other:?} after block {blocks_sent}"),
            }
        }
        assert_eq!(blocks_sent, 131_073);
    }

    #[test]
    fn rollover_with_windows_straddling_the_wrap() {
        let mut transfer = ReadTransfer::new(70_000 * 512, 512, 64, false, 3);
        let mut step = transfer.start();
        let mut acked = 0u64;
        while let Step::SendData { first, last } = step {
            assert_eq!(first, acked + 1);
            acked = last;
            step = transfer.on_ack(wire_block_number(last));
        }
        assert_eq!(step, Step::Complete);
        assert_eq!(acked, 70_001);
    }

    #[test]
    fn retransmission_after_timeout_across_the_wrap() {
        // Windows of 7 blocks: one of them runs from 65535 to 65541, across the wrap.
        let mut transfer = ReadTransfer::new(70_000 * 512, 512, 7, false, 3);
        let mut step = transfer.start();
        while let Step::SendData { last, .. } = step {
            if last > 65_536 {
                break;
            }
            step = transfer.on_ack(wire_block_number(last));
        }
        let Step::SendData { first, last } = step else {
            panic!("transfer ended early: {step:?}");
        };
        assert!(first <= 65_536 && last > 65_536, "window {first}..={last}");
        assert_eq!(transfer.on_timeout(), Step::SendData { first, last });
        // The client got up to block 65536 (wire 0) and lost the next one.
        assert_eq!(
            transfer.on_ack(0),
            Step::SendData {
                first: 65_537,
                last: 65_543
            }
        );
    }

    proptest! {
        /// Under random loss, reordering and duplicates of ACKs, the transfer only
        /// moves forward, never sends past the end, and completes once the last block
        /// is acknowledged.
        #[test]
        fn random_ack_streams_never_move_backwards(
            blocks in 1u64..300, window in 1u16..20,
            acks in proptest::collection::vec((any::<bool>(), 0u64..25), 0..400)) {
            let mut transfer = ReadTransfer::new((blocks - 1) * 512 + 100, 512, window, false, 1000);
            let mut step = transfer.start();
            let mut acknowledged = 0u64;
            let mut sent_through = 0u64;
            for (timeout, back) in acks {
                if let Step::SendData { first, last } = step {
                    prop_assert!(first == acknowledged + 1);
                    prop_assert!(last <= blocks && last >= first);
                    prop_assert!(last - first < u64::from(window));
                    sent_through = last;
                }
                if step == Step::Complete { break; }
                step = if timeout {
                    transfer.on_timeout()
                } else {
                    // ACK some block at or before what was sent.
                    let index = sent_through.saturating_sub(back);
                    let next = transfer.on_ack(wire_block_number(index));
                    if index > acknowledged { acknowledged = index; }
                    else { prop_assert_eq!(next, Step::KeepWaiting); }
                    if next == Step::KeepWaiting { step } else { next }
                };
            }
        }
    }
}
