//! Progress of a backfill, for the person waiting on it.
//!
//! Input: the bytes of input read so far ([`Work`]), the total when known,
//! and the workers' published counters ([`Metrics`], every half second).
//! Output, on a thread of its own until stopped: on a terminal, a progress
//! bar on stderr (bytes done and total, rate, ETA, records and errors so
//! far); otherwise a JSON log line (`"message":"progress"`) every
//! [`LOG_EVERY`] (`LAKEHOSE_PROGRESS_EVERY_MS` overrides). Failure: none
//! (a closed stderr drops the output).

use crate::metrics::Metrics;
use crate::source::work::Work;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Between two progress lines when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// A bar on a terminal, log lines otherwise.
    Auto,
    Bar,
    Log,
    Off,
}

/// Reports progress until dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// (records, errors) the workers published so far.
fn counts(metrics: &[Arc<Metrics>]) -> (u64, u64) {
    metrics.iter().map(|m| m.snapshot().stats).fold((0, 0), |(r, e), s| (r + s.records_in, e + s.error_total()))
}

impl Progress {
    pub fn start(mode: Mode, total: Option<u64>, work: Arc<Work>, metrics: Vec<Arc<Metrics>>) -> Progress {
        let mode = match mode {
            Mode::Auto if std::io::IsTerminal::is_terminal(&std::io::stderr()) => Mode::Bar,
            Mode::Auto => Mode::Log,
            m => m,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (mode != Mode::Off).then(|| {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("lakehose-progress".into())
                .spawn(move || match mode {
                    Mode::Bar => bar(total, &work, &metrics, &stop),
                    _ => log(total, &work, &metrics, &stop),
                })
                .expect("spawn the progress thread")
        });
        Progress { stop, thread }
    }
}

fn bar(total: Option<u64>, work: &Work, metrics: &[Arc<Metrics>], stop: &AtomicBool) {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let pb = match total {
        Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}").expect("a valid template").progress_chars("=> "),
        ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            .with_style(ProgressStyle::with_template("{elapsed_precise} {spinner} {bytes} {bytes_per_sec} {msg}").expect("a valid template")),
    };
    while !stop.load(Ordering::Relaxed) {
        let (records, errors) = counts(metrics);
        pb.set_position(work.bytes_done.load(Ordering::Relaxed));
        pb.set_message(format!("{records} records, {errors} errors"));
        std::thread::sleep(Duration::from_millis(200));
    }
    pb.finish_and_clear();
}

fn log(total: Option<u64>, work: &Work, metrics: &[Arc<Metrics>], stop: &AtomicBool) {
    let every = std::env::var("LAKEHOSE_PROGRESS_EVERY_MS").ok().and_then(|v| v.parse().ok()).map_or(LOG_EVERY, Duration::from_millis);
    let started = Instant::now();
    let mut next = started + every;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if Instant::now() < next {
            continue;
        }
        next += every;
        let done = work.bytes_done.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        let rate = done as f64 / secs.max(1e-3);
        let eta = total.filter(|_| rate > 0.0).map(|t| (t.saturating_sub(done) as f64 / rate).round() as u64);
        let (records, errors) = counts(metrics);
        tracing::info!(bytes_done = done, bytes_total = total, records, errors, mb_per_s = (rate / 1e6 * 10.0).round() / 10.0, eta_s = eta, "progress");
    }
}
