//! Gzip line buffers compressed while they fill, on other cores.
//!
//! Input: lines appended to a [`GzLines`] (a raw-backup or error buffer).
//! Output: at [`GzLines::finish`], one gzip object of all of them: every
//! [`BLOCK`] bytes of lines is one gzip member, compressed by a pool of
//! threads (one per core) as soon as the block is full, so the record loop
//! never waits for compression while a core is free; when the pool's queue
//! is full the block is compressed where it is (the queue bounds the memory
//! waiting for compression). A multi-member gzip object is ordinary gzip:
//! `gzip -d`, Python's `gzip`, DuckDB, Athena and `lakehose convert` read
//! it whole. Failure: an I/O error of the encoder (which writes to memory:
//! not expected), returned by `finish`.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::oneshot;

/// Bytes of lines per gzip member.
pub const BLOCK: usize = 1 << 20;

type Done = oneshot::Sender<std::io::Result<Vec<u8>>>;

/// Gzip at a fast level (libdeflate's level 1, one member): the output is
/// ordinary gzip any tool reads.
pub fn gzip(data: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    thread_local! {
        // the compressor and an output area as large as any output, reused
        static COMPRESSOR: std::cell::RefCell<(libdeflater::Compressor, Vec<u8>)> =
            std::cell::RefCell::new((libdeflater::Compressor::new(libdeflater::CompressionLvl::new(1).expect("level 1 exists")), Vec::new()));
    }
    COMPRESSOR.with_borrow_mut(|(c, scratch)| {
        let bound = c.gzip_compress_bound(data.len());
        if scratch.len() < bound {
            scratch.resize(bound, 0);
        }
        let n = c.gzip_compress(data, scratch).map_err(|e| std::io::Error::other(format!("gzip: {e:?}")))?;
        Ok(scratch[..n].to_vec())
    })
}

/// The compressing threads and their queue.
struct Pool {
    queue: SyncSender<(Vec<u8>, Done)>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (queue, jobs) = sync_channel::<(Vec<u8>, Done)>(threads * 2);
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..threads {
            let jobs = jobs.clone();
            std::thread::Builder::new().name(format!("lakehose-gzip-{i}")).spawn(move || work(&jobs)).expect("spawn a gzip thread");
        }
        Pool { queue }
    })
}

fn work(jobs: &Mutex<Receiver<(Vec<u8>, Done)>>) {
    loop {
        let next = jobs.lock().map(|rx| rx.recv());
        let Ok(Ok((block, done))) = next else { return };
        // the buffer may have been dropped (its shard revoked): nobody waits
        let _ = done.send(gzip(&block));
    }
}

enum Member {
    Ready(std::io::Result<Vec<u8>>),
    /// Being compressed; the block's length until it is back.
    Pending(oneshot::Receiver<std::io::Result<Vec<u8>>>, usize),
}

/// Lines being compressed member by member.
#[derive(Default)]
pub struct GzLines {
    members: Vec<Member>,
    /// Lines not yet handed to compression.
    open: Vec<u8>,
    /// Bytes of lines in all (compressed ones counted as they were).
    len: usize,
}

impl GzLines {
    /// Appends what `write` writes (whole lines); a full block goes to be compressed.
    #[inline]
    pub fn write(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let before = self.open.len();
        write(&mut self.open);
        self.len += self.open.len() - before;
        if self.open.len() >= BLOCK {
            self.spill();
        }
    }

    /// Bytes of lines held (before compression).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Memory held: open lines, compressed members, and blocks being compressed.
    pub fn mem(&self) -> usize {
        self.open.capacity()
            + self.members.iter().map(|m| match m {
                Member::Ready(z) => z.as_ref().map_or(0, Vec::len),
                Member::Pending(_, n) => *n,
            }).sum::<usize>()
    }

    fn spill(&mut self) {
        let block = std::mem::replace(&mut self.open, Vec::with_capacity(BLOCK + (BLOCK >> 3)));
        let (tx, rx) = oneshot::channel();
        let n = block.len();
        let member = match pool().queue.try_send((block, tx)) {
            Ok(()) => Member::Pending(rx, n),
            // the pool is busy: compress here
            Err(TrySendError::Full((block, _)) | TrySendError::Disconnected((block, _))) => Member::Ready(gzip(&block)),
        };
        self.members.push(member);
        // members that came back count at their compressed size
        for m in &mut self.members {
            if let Member::Pending(rx, _) = m {
                if let Ok(r) = rx.try_recv() {
                    *m = Member::Ready(r);
                }
            }
        }
    }

    /// The gzip object of every line: the members in order, the open lines last.
    pub async fn finish(self) -> std::io::Result<Vec<u8>> {
        let tail = if self.open.is_empty() && !self.members.is_empty() { Vec::new() } else { gzip(&self.open)? };
        let mut parts = Vec::with_capacity(self.members.len() + 1);
        for m in self.members {
            parts.push(match m {
                Member::Ready(z) => z?,
                Member::Pending(rx, _) => rx.await.map_err(|_| std::io::Error::other("the gzip thread stopped"))??,
            });
        }
        parts.push(tail);
        Ok(parts.concat())
    }

    /// The lines as they were written (tests look into sealed buffers).
    #[cfg(test)]
    pub fn into_plain(self) -> Vec<u8> {
        use std::io::Read;
        let z = futures::executor::block_on(self.finish()).expect("gzip");
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&z[..]).read_to_end(&mut out).expect("gunzip");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(z: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(z).read_to_end(&mut out).unwrap();
        out
    }

    /// Lines written in any sizes come back whole and in order from the
    /// members, whether compressed by the pool or in place.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn members_hold_every_line_in_order() {
        for lines in [0usize, 1, 3, 40_000, 120_000] {
            let mut g = GzLines::default();
            let mut want = Vec::new();
            for i in 0..lines {
                let line = format!("{{\"i\":{i},\"pad\":\"{}\"}}\n", "x".repeat(i % 97));
                want.extend_from_slice(line.as_bytes());
                g.write(|b| b.extend_from_slice(line.as_bytes()));
            }
            assert_eq!(g.len(), want.len());
            assert!(lines < 100_000 || g.members.len() > 3, "blocks went to be compressed");
            let z = g.finish().await.unwrap();
            assert_eq!(gunzip(&z), want, "{lines} lines");
        }
    }
}
