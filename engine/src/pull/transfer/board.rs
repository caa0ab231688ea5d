//! The board's routing: which source may serve a job, handing work out, taking it back,
//! and fetching again what a slower source still holds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::{Board, Job, NewWork, Run, Running, Task, HEDGE_AFTER, MAX_WAITING_CONTENT};
use crate::object::ObjectKind;
use crate::schema::{SourceKind, SourceState};
use crate::source::Interrupt;

impl Run<'_, '_, '_> {
    pub(super) fn add_job(&self, work: &mut NewWork, job: Job) {
        self.transfer.progress.expect(1, 0);
        let holder = self.holder(&job);
        work.jobs.push((job, holder));
    }

    /// Puts new work on the board under one lock, and wakes as many workers as it may keep
    /// busy.
    pub(super) fn post(&self, work: NewWork) {
        let count = work.jobs.len() + work.local.len();
        if count == 0 {
            return;
        }
        let mut board = self.lock();
        board.outstanding += count;
        board.local.extend(work.local);
        for (job, holder) in work.jobs {
            self.route(&mut board, job, holder);
        }
        drop(board);
        if count == 1 {
            self.changed.notify_one();
        } else {
            self.changed.notify_all();
        }
    }

    /// The first usable drive holding the object, if any. A drive tells cheaply; when it is
    /// the only source left, it is not even asked, since it gets the job either way (and a
    /// miss is handled as from any source).
    pub(super) fn holder(&self, job: &Job) -> Option<usize> {
        let usable = |index: usize| {
            !self.dropped[index].load(Ordering::Relaxed) && !job.lacking.contains(&index)
        };
        let sources = &self.transfer.sources;
        let mut left = (0..sources.len()).filter(|index| usable(*index));
        if let (Some(only), None) = (left.next(), left.next()) {
            if sources[only].info().kind == SourceKind::Drive {
                return Some(only);
            }
        }
        sources
            .iter()
            .enumerate()
            .filter(|(index, source)| source.info().kind == SourceKind::Drive && usable(*index))
            .find(|(_, source)| source.has_object(job.object) == Some(true))
            .map(|(index, _)| index)
    }

    /// Queues a job for its drive, or for the network sources; fails the pull when no
    /// source is left for it. The caller wakes the workers.
    pub(super) fn route(&self, board: &mut Board, job: Job, holder: Option<usize>) {
        let queue = match holder {
            Some(drive) if board.slots[drive].state != SourceState::Dropped => {
                &mut board.drives[drive]
            }
            _ => {
                let network = board.slots.iter().enumerate().any(|(index, slot)| {
                    !slot.drive
                        && slot.state != SourceState::Dropped
                        && !job.lacking.contains(&index)
                });
                if !network {
                    let error = self.unfetchable(board, &job);
                    self.fail_locked(board, error);
                    return;
                }
                &mut board.shared
            }
        };
        if job.object.kind == ObjectKind::File {
            queue.content.push_back(job);
            board.waiting_content += 1;
        } else {
            queue.metadata.push_back(job);
        }
    }

    /// Routes a job again after its source failed it (or was dropped), unless the same
    /// object is still being fetched elsewhere.
    pub(super) fn requeue(&self, board: &mut Board, job: Job, twin: Option<u64>) {
        if let Some(twin) = twin.and_then(|ticket| board.running.get_mut(&ticket)) {
            twin.twin = None;
            return;
        }
        let holder = self.holder(&job);
        self.route(board, job, holder);
    }

    /// The next task for a worker of `source`; None when the transfer is over for it.
    pub(super) fn take(&self, source: usize) -> Option<Task> {
        let mut board = self.lock();
        loop {
            if board.failure.is_some()
                || self.transfer.cancel.is_cancelled()
                || board.outstanding == 0
                || board.slots[source].state == SourceState::Dropped
            {
                self.changed.notify_all();
                return None;
            }
            if board.waiting_content < MAX_WAITING_CONTENT {
                if let Some((tree, path)) = board.local.pop() {
                    return Some(Task::Expand { tree, path });
                }
            }
            if let Some(job) = Self::pick(&mut board, source) {
                return Some(self.hand_out(&mut board, source, job, None));
            }
            if let Some((twin, job)) = Self::hedge(&board, source) {
                return Some(self.hand_out(&mut board, source, job, Some(twin)));
            }
            if Self::only_content_in_flight(&board) {
                board.wrote_ahead = true;
                return Some(Task::WriteAhead);
            }
            board = match self.changed.wait_timeout(board, Interrupt::POLL) {
                Ok((board, _)) => board,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Whether the walk is over and every object left is being fetched, the first time it
    /// is seen: the disk may then write what is staged while the last objects arrive.
    fn only_content_in_flight(board: &Board) -> bool {
        !board.wrote_ahead
            && board.local.is_empty()
            && board.waiting_content == 0
            && board.shared.metadata.is_empty()
            && board.drives.iter().all(|queue| queue.metadata.is_empty())
            && board
                .running
                .values()
                .all(|running| running.job.object.kind == ObjectKind::File)
    }

    pub(super) fn hand_out(
        &self,
        board: &mut Board,
        source: usize,
        job: Job,
        twin: Option<u64>,
    ) -> Task {
        let ticket = board.next_ticket;
        board.next_ticket += 1;
        let abandoned = Arc::new(AtomicBool::new(false));
        let interrupt = Interrupt::on_cancel_or_abandon(self.transfer.cancel, abandoned.clone());
        if let Some(other) = twin.and_then(|twin| board.running.get_mut(&twin)) {
            other.twin = Some(ticket);
        }
        board.running.insert(
            ticket,
            Running {
                job: job.clone(),
                source,
                started: Instant::now(),
                interrupt: interrupt.clone(),
                abandoned,
                twin,
            },
        );
        Task::Fetch {
            ticket,
            job,
            interrupt,
        }
    }

    /// The next queued job `source` may fetch: dirtrees and dirmetas first while the content
    /// backlog is small. A source set aside only takes what no active source could.
    pub(super) fn pick(board: &mut Board, source: usize) -> Option<Job> {
        let metadata_first = board.waiting_content < MAX_WAITING_CONTENT;
        let slots = &board.slots;
        let set_aside = slots[source].state == SourceState::SetAside;
        let drive = slots[source].drive;
        let allowed = |job: &Job| {
            !job.lacking.contains(&source)
                && (!set_aside
                    || drive
                    || !slots.iter().enumerate().any(|(other, slot)| {
                        other != source
                            && !slot.drive
                            && slot.state == SourceState::Active
                            && !job.lacking.contains(&other)
                    }))
        };
        let queue = if drive {
            &mut board.drives[source]
        } else {
            &mut board.shared
        };
        let order: [bool; 2] = if metadata_first {
            [true, false]
        } else {
            [false, true]
        };
        for metadata in order {
            let list = if metadata {
                &mut queue.metadata
            } else {
                &mut queue.content
            };
            if let Some(position) = list.iter().position(&allowed) {
                let job = list.remove(position)?;
                if !metadata {
                    board.waiting_content -= 1;
                }
                return Some(job);
            }
        }
        None
    }

    /// With nothing queued for it, a network source fetches again the oldest request a set-aside
    /// source holds, or one running for [`HEDGE_AFTER`], that no one else is duplicating.
    pub(super) fn hedge(board: &Board, source: usize) -> Option<(u64, Job)> {
        let slot = &board.slots[source];
        if slot.drive || slot.state != SourceState::Active {
            return None;
        }
        board
            .running
            .iter()
            .filter(|(_, running)| {
                running.source != source
                    && running.twin.is_none()
                    && !board.slots[running.source].drive
                    && !running.job.lacking.contains(&source)
                    && (board.slots[running.source].state != SourceState::Active
                        || running.started.elapsed() >= HEDGE_AFTER)
            })
            .min_by_key(|(_, running)| running.started)
            .map(|(ticket, running)| (*ticket, running.job.clone()))
    }
}
