//! Watching the sources: stalled and slow ones are set aside, dropped ones recorded.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Board, Run, SLOW_FACTOR, SLOW_WINDOW, STALL, WATCH_EVERY};
use crate::event::human_bytes;
use crate::schema::SourceState;

impl Run<'_, '_, '_> {
    /// Sets a source aside or drops it. A dropped source's requests and a dropped drive's
    /// queue go to the others.
    pub(super) fn set_state(
        &self,
        board: &mut Board,
        source: usize,
        state: SourceState,
        reason: String,
    ) {
        let current = board.slots[source].state;
        if current == SourceState::Dropped || current == state {
            return;
        }
        board.slots[source].state = state;
        match state {
            SourceState::Dropped => {
                tracing::warn!(source = %self.transfer.names[source], "dropping the source: {reason}")
            }
            _ => {
                tracing::info!(source = %self.transfer.names[source], "setting the source aside: {reason}")
            }
        }
        self.transfer
            .progress
            .set_state(source, state, Some(reason));
        if state != SourceState::Dropped {
            return;
        }
        self.dropped[source].store(true, Ordering::Relaxed);
        let tickets: Vec<u64> = board
            .running
            .iter()
            .filter(|(_, running)| running.source == source)
            .map(|(ticket, _)| *ticket)
            .collect();
        for ticket in tickets {
            if let Some(running) = board.running.remove(&ticket) {
                running.abandon();
                self.requeue(board, running.job, running.twin);
            }
        }
        let queue = std::mem::take(&mut board.drives[source]);
        board.waiting_content -= queue.content.len();
        for job in queue.metadata.into_iter().chain(queue.content) {
            self.requeue(board, job, None);
        }
    }

    /// Until the transfer is over: requests silent for [`STALL`] go to other sources, and
    /// sources much slower than the others are set aside.
    pub(super) fn watch(&self) {
        let mut board = self.lock();
        loop {
            if board.failure.is_some()
                || self.transfer.cancel.is_cancelled()
                || board.outstanding == 0
            {
                break;
            }
            board = match self.changed.wait_timeout(board, WATCH_EVERY) {
                Ok((board, _)) => board,
                Err(poisoned) => poisoned.into_inner().0,
            };
            self.find_stalls(&mut board);
            self.find_slow(&mut board);
        }
        // Wake every worker so they see the end.
        for running in board.running.values() {
            if self.transfer.cancel.is_cancelled() || board.failure.is_some() {
                running.abandon();
            }
        }
        self.changed.notify_all();
    }

    pub(super) fn find_stalls(&self, board: &mut Board) {
        let stalled: Vec<u64> = board
            .running
            .iter()
            .filter(|(_, running)| {
                running.twin.is_none() && running.interrupt.silent_for(running.started) >= STALL
            })
            .filter(|(_, running)| {
                // Only worth it when another source could take the object.
                board.slots.iter().enumerate().any(|(other, slot)| {
                    other != running.source
                        && !slot.drive
                        && slot.state == SourceState::Active
                        && !running.job.lacking.contains(&other)
                })
            })
            .map(|(ticket, _)| *ticket)
            .collect();
        for ticket in stalled {
            let Some(running) = board.running.remove(&ticket) else {
                continue;
            };
            running.abandon();
            self.set_state(
                board,
                running.source,
                SourceState::SetAside,
                format!(
                    "it stalled: nothing arrived for {} s while it sent {}",
                    STALL.as_secs(),
                    running.job.object
                ),
            );
            self.requeue(board, running.job, None);
        }
    }

    pub(super) fn find_slow(&self, board: &mut Board) {
        let now = Instant::now();
        let shares = self.transfer.progress.shares();
        let mut busy = vec![false; board.slots.len()];
        for running in board.running.values() {
            busy[running.source] = true;
        }
        let mut rates: Vec<Option<u64>> = Vec::with_capacity(board.slots.len());
        for (index, slot) in board.slots.iter_mut().enumerate() {
            let bytes = shares.get(index).map_or(0, |share| share.bytes);
            slot.samples.push_back((now, bytes, busy[index]));
            while slot
                .samples
                .front()
                .is_some_and(|(at, _, _)| now.duration_since(*at) > SLOW_WINDOW)
            {
                slot.samples.pop_front();
            }
            let rate = match (slot.samples.front(), slot.samples.back()) {
                (Some((first_at, first, _)), Some((_, latest, _)))
                    if slot.state == SourceState::Active
                        && !slot.drive
                        && now.duration_since(*first_at) + WATCH_EVERY >= SLOW_WINDOW
                        && slot.samples.iter().all(|(_, _, busy)| *busy) =>
                {
                    let seconds = now.duration_since(*first_at).as_secs_f64().max(1.0);
                    Some((latest.saturating_sub(*first) as f64 / seconds) as u64)
                }
                _ => None,
            };
            rates.push(rate);
        }
        for index in 0..rates.len() {
            let Some(rate) = rates[index] else { continue };
            let mut others: Vec<u64> = rates
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .filter_map(|(_, rate)| *rate)
                .collect();
            if others.is_empty() {
                continue;
            }
            others.sort_unstable();
            let median = others[others.len() / 2];
            if rate.saturating_mul(SLOW_FACTOR) < median {
                self.set_state(
                    board,
                    index,
                    SourceState::SetAside,
                    format!(
                        "it is much slower than the others ({} against {} per second)",
                        human_bytes(rate),
                        human_bytes(median)
                    ),
                );
            }
        }
    }
}
