//! The work of a backfill: units of input shared by `convert`'s workers.
//!
//! Input: the [`Job`]s of the inputs ([`super::inputs::jobs`]), and chunks
//! of streamed inputs that their decoders ([`super::feed`]) add as they go.
//! Output: to each worker that asks ([`Work::next`]), the next job: chunks
//! of inputs being decoded first (so a started input finishes before new
//! ones start), then the rest in order; `None` once nothing is queued and
//! no decoder may add more. Also what every part shares: the memory budget
//! of decoded bytes in flight, the bytes read so far (for progress), and
//! the problems met with inputs (a corrupt gzip object, an object that
//! vanished), which never stop the others. Failure: none; [`Work::stop`]
//! drops what is queued (a worker failed: the backfill stops).

use super::inputs::Input;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

/// Bytes of decoded input per [`Piece`].
pub const PIECE: usize = 1 << 20;

/// Bytes per permit of the decoded-bytes budget.
const PERMIT: usize = 64 << 10;

/// Decoded bytes of a streamed input, holding their share of the budget
/// until the worker is done with them.
pub struct Piece {
    pub bytes: Vec<u8>,
    pub _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// A chunk's pieces, in order; the chunk ends when the sender is dropped.
pub type PieceRx = mpsc::UnboundedReceiver<Piece>;
pub type PieceTx = mpsc::UnboundedSender<Piece>;

/// A unit of work.
pub enum Job {
    /// Bytes `start..end` of a plain local file (`end` None: to its end),
    /// starting at a line's start.
    Range { input: Arc<Input>, start: u64, end: Option<u64> },
    /// An input read as a stream (S3, compressed, a pipe, stdin): its taker
    /// starts its decoder and reads its first chunk.
    Stream(Arc<Input>),
    /// A chunk of a streamed input from decoded offset `start`; `taken`
    /// tells the decoder that a worker reads it.
    Piped { input: Arc<Input>, start: u64, pieces: PieceRx, taken: oneshot::Sender<()> },
}

impl Job {
    pub fn input(&self) -> &Arc<Input> {
        match self {
            Job::Range { input, .. } | Job::Stream(input) | Job::Piped { input, .. } => input,
        }
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// Decoders running: they may still add chunks.
    decoding: usize,
    stopped: bool,
}

pub struct Work {
    state: Mutex<State>,
    changed: Notify,
    /// Decoded bytes in flight (pieces not yet read by a worker).
    budget: Arc<Semaphore>,
    /// Input bytes read so far (compressed ones for compressed inputs).
    pub bytes_done: AtomicU64,
    problems: Mutex<Vec<(String, String)>>,
    /// Every line of every input is an error line (`--from-errors`).
    pub from_errors: bool,
}

impl Work {
    /// `budget`: bytes of decoded input in flight at most.
    pub fn new(jobs: Vec<Job>, budget: usize, from_errors: bool) -> Arc<Work> {
        Arc::new(Work {
            state: Mutex::new(State { queue: jobs.into(), ..State::default() }),
            changed: Notify::new(),
            budget: Arc::new(Semaphore::new((budget / PERMIT).max(PIECE / PERMIT))),
            bytes_done: AtomicU64::new(0),
            problems: Mutex::new(Vec::new()),
            from_errors,
        })
    }

    /// The next job; None when all is done (or stopped).
    pub async fn next(&self) -> Option<Job> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut s = self.state.lock().expect("work lock");
                if s.stopped {
                    return None;
                }
                if let Some(job) = s.queue.pop_front() {
                    if matches!(job, Job::Stream(_)) {
                        s.decoding += 1;
                    }
                    return Some(job);
                }
                if s.decoding == 0 {
                    return None;
                }
            }
            changed.await;
        }
    }

    /// A decoder's next chunk, ahead of every other job.
    pub fn push_chunk(&self, job: Job) {
        let mut s = self.state.lock().expect("work lock");
        if !s.stopped {
            s.queue.push_front(job);
        }
        drop(s);
        self.changed.notify_waiters();
    }

    /// A decoder (started by taking a [`Job::Stream`]) ended.
    pub fn decoder_done(&self) {
        self.state.lock().expect("work lock").decoding -= 1;
        self.changed.notify_waiters();
    }

    /// Drops every queued job and stops the decoders (a worker failed).
    pub fn stop(&self) {
        let mut s = self.state.lock().expect("work lock");
        s.stopped = true;
        s.queue.clear();
        drop(s);
        self.budget.close();
        self.changed.notify_waiters();
    }

    /// Waits (a decoder's thread) for room for `n` decoded bytes; None once stopped.
    pub fn room_blocking(&self, handle: &tokio::runtime::Handle, n: usize) -> Option<tokio::sync::OwnedSemaphorePermit> {
        // the budget holds at least a piece
        let permits = n.min(PIECE).div_ceil(PERMIT) as u32;
        handle.block_on(self.budget.clone().acquire_many_owned(permits)).ok()
    }

    /// Something went wrong with an input; the others go on.
    pub fn problem(&self, input: &str, what: impl Into<String>) {
        let what = what.into();
        tracing::error!(input, "{input}: {what}");
        self.problems.lock().expect("problems lock").push((input.to_string(), what));
    }

    pub fn problems(&self) -> Vec<(String, String)> {
        self.problems.lock().expect("problems lock").clone()
    }

    pub fn add_bytes(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
    }
}
