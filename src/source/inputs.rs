//! `convert`'s inputs: what the command line names, expanded, and cut into
//! units of work.
//!
//! Input: arguments — files, directories (every file below, hidden ones
//! left out), glob patterns (`logs/*/2026-*.ndjson.gz`), `-` (stdin) and
//! `s3://bucket/prefix/` (every object below, listed page by page). Output:
//! [`Input`]s, each with an id that object keys derive from (its file name
//! and a stable hash of its full path or S3 URL, so re-running on the same
//! inputs writes the same keys, and two inputs named alike never share
//! one) and an arrival time (a `dt=YYYY-MM-DD/hr=HH/` in its path, as the
//! raw backup and error prefix write; else its modification time); and
//! their [`Job`]s: a plain local file is cut into ranges, each ending just
//! after the first newline at or past its mark (a grid fixed by the file's
//! size and [`CHUNK`], not by `--jobs`: a file of a chunk or less is one
//! range; else a quarter of what is left, between a quarter of a chunk and
//! a chunk, so the last ranges are smaller and the workers finish
//! together); any other input is read as a stream (and cut
//! by its decoder on a fixed grid, [`super::feed`]). Failure:
//! [`InputError`] naming the argument (nothing matched, unreadable, S3
//! listing).

use super::unwrap::{kind_of, LineKind};
use super::work::Job;
use crate::ids::ShardId;
use crate::store::{Store, StoreOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Bytes of input per unit of work at most.
pub const CHUNK: u64 = 64 << 20;

/// Bytes of an input's start read to tell what its lines are.
const SNIFF: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{arg}: {message}")]
    Arg { arg: String, message: String },
}

fn arg_err(arg: &str, message: impl std::fmt::Display) -> InputError {
    InputError::Arg { arg: arg.to_string(), message: message.to_string() }
}

/// Where an input's bytes are.
#[derive(Debug, Clone)]
pub enum Location {
    Stdin,
    Local(PathBuf),
    S3 { store: Store, key: String },
}

/// How an input's bytes are packed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    Plain,
    Gzip,
    Zstd,
}

impl Packing {
    pub fn of(magic: &[u8]) -> Packing {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Packing::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Packing::Zstd
        } else {
            Packing::Plain
        }
    }
}

#[derive(Debug)]
pub struct Input {
    /// As the user would write it: a path, `s3://bucket/key`, `-`.
    pub name: String,
    /// What its object keys start with.
    pub id: ShardId,
    pub location: Location,
    /// Bytes (compressed ones for a compressed input), when known.
    pub size: Option<u64>,
    pub arrival_ms: i64,
    /// What its lines are, known before any of them is converted.
    pub kind: OnceLock<LineKind>,
}

impl Input {
    fn new(name: String, id: ShardId, location: Location, size: Option<u64>, arrival_ms: i64) -> Input {
        Input { name, id, location, size, arrival_ms, kind: OnceLock::new() }
    }
}

/// A stable 32-bit hash (FNV-1a) of an input's full name, for its id.
fn name_hash(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}

fn id_for(file_name: &str, full: &str) -> ShardId {
    ShardId::new(&format!("{file_name}-{:08x}", name_hash(full)))
}

/// The start of the hour a `dt=YYYY-MM-DD/hr=HH/` in `path` names.
pub fn arrival_from_path(path: &str) -> Option<i64> {
    let at = path.find("dt=")?;
    let rest = &path[at + 3..];
    let day = crate::timefmt::parse_date(rest.get(..10)?)? as i64;
    let hr: i64 = rest.get(10..)?.strip_prefix("/hr=")?.get(..2)?.parse().ok()?;
    (0..24).contains(&hr).then_some(day * 86_400_000 + hr * 3_600_000)
}

fn mtime_ms(m: &std::fs::Metadata) -> i64 {
    m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_millis() as i64)
}

/// A local file as an input.
pub fn local_input(path: &Path) -> Result<Input, InputError> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| arg_err(&name, e))?;
    let full = std::fs::canonicalize(path).map_or_else(|_| name.clone(), |p| p.display().to_string());
    let file_name = path.file_name().map_or_else(|| name.clone(), |f| f.to_string_lossy().into_owned());
    let arrival_ms = arrival_from_path(&full).unwrap_or_else(|| mtime_ms(&meta));
    Ok(Input::new(name, id_for(&file_name, &full), Location::Local(path.to_path_buf()), meta.is_file().then_some(meta.len()), arrival_ms))
}

/// Every file below `dir`, sorted, hidden ones (`.…`) left out.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<std::fs::DirEntry> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let t = e.file_type()?;
        if t.is_dir() {
            walk(&e.path(), out)?;
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

/// The inputs the arguments name, in order.
pub async fn expand(args: &[String], opts: &StoreOptions) -> Result<Vec<Input>, InputError> {
    let mut out = Vec::new();
    for arg in args {
        if arg == "-" {
            out.push(Input::new("-".into(), ShardId::new("stdin"), Location::Stdin, None, crate::source::now_ms()));
        } else if let Some(rest) = arg.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let store = Store::open(&format!("s3://{bucket}/"), opts).map_err(|e| arg_err(arg, e))?;
            let objects = store.list(prefix).await.map_err(|e| arg_err(arg, e))?;
            if objects.is_empty() {
                return Err(arg_err(arg, "no object under this prefix"));
            }
            for (key, size, modified_ms) in objects {
                let url = format!("s3://{bucket}/{key}");
                let file_name = key.rsplit('/').next().unwrap_or(&key).to_string();
                let arrival_ms = arrival_from_path(&key).unwrap_or(modified_ms);
                out.push(Input::new(url.clone(), id_for(&file_name, &url), Location::S3 { store: store.clone(), key }, Some(size), arrival_ms));
            }
        } else if arg.contains(['*', '?', '[']) {
            let paths: Vec<PathBuf> = glob::glob(arg).map_err(|e| arg_err(arg, e))?.collect::<Result<_, _>>().map_err(|e| arg_err(arg, e))?;
            let files: Vec<PathBuf> = paths.into_iter().filter(|p| p.is_file()).collect();
            if files.is_empty() {
                return Err(arg_err(arg, "the pattern matches no file"));
            }
            for f in files {
                out.push(local_input(&f)?);
            }
        } else if Path::new(arg).is_dir() {
            let mut files = Vec::new();
            walk(Path::new(arg), &mut files).map_err(|e| arg_err(arg, e))?;
            if files.is_empty() {
                return Err(arg_err(arg, "the directory holds no file"));
            }
            for f in files {
                out.push(local_input(&f)?);
            }
        } else {
            out.push(local_input(Path::new(arg))?);
        }
    }
    Ok(out)
}

/// The jobs of `inputs`: plain local files cut into ranges on the grid
/// of `chunk`, with what their lines are read from their start
/// (`from_errors`: error lines); the rest as streams.
pub fn jobs(inputs: Vec<Input>, chunk: u64, from_errors: bool) -> Result<Vec<Job>, InputError> {
    let mut out = Vec::new();
    for input in inputs {
        let input = Arc::new(input);
        let (Location::Local(path), Some(size)) = (&input.location, input.size) else {
            out.push(Job::Stream(input));
            continue;
        };
        let err = |e| arg_err(&input.name, e);
        let mut f = std::fs::File::open(path).map_err(err)?;
        let mut start = vec![0u8; SNIFF.min(size as usize)];
        f.read_exact(&mut start).map_err(err)?;
        if Packing::of(&start) != Packing::Plain {
            out.push(Job::Stream(input));
            continue;
        }
        let _ = input.kind.set(kind_of(&start, from_errors));
        let mut from = 0;
        for c in grid(&mut f, size, chunk).map_err(err)? {
            out.push(Job::Range { input: input.clone(), start: from, end: Some(c) });
            from = c;
        }
        out.push(Job::Range { input, start: from, end: None });
    }
    Ok(out)
}

/// The cuts of a plain file of `size` bytes: none when it is a chunk or
/// less, else each just past the first newline at or after its mark, the
/// next mark a quarter of what is left on (at least `chunk / 4`, at most
/// `chunk`); in order, none at the end.
fn grid(f: &mut std::fs::File, size: u64, chunk: u64) -> std::io::Result<Vec<u64>> {
    let mut cuts: Vec<u64> = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut from = 0u64;
    loop {
        if size <= chunk {
            return Ok(cuts); // a file of a chunk or less is one unit
        }
        let step = ((size - from) / 4).clamp((chunk / 4).max(1), chunk);
        let mark = from + step;
        if mark >= size {
            return Ok(cuts);
        }
        f.seek(SeekFrom::Start(mark - 1))?;
        let mut at = mark - 1;
        let cut = loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break None;
            }
            if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
                break Some(at + i as u64 + 1);
            }
            at += n as u64;
        };
        match cut {
            Some(c) if c < size => {
                cuts.push(c);
                from = c;
            }
            _ => return Ok(cuts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cuts fall just after the first newline at or past each mark, a
    /// quarter of the rest on (between chunk/8 and chunk), also when one
    /// long line spans several marks; the jobs cover the file end to end.
    #[test]
    fn plain_files_are_cut_after_newlines_on_a_grid_of_their_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.ndjson");
        let mut data = Vec::new();
        for i in 0..2000 {
            data.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, if i == 50 { 900 } else { 37 }));
            data.push(b'\n');
        }
        std::fs::write(&path, &data).unwrap();
        let size = data.len() as u64;
        let mut f = std::fs::File::open(&path).unwrap();
        let cuts = grid(&mut f, size, 8000).unwrap();
        let mut from = 0u64;
        for c in &cuts {
            let mark = from + ((size - from) / 4).clamp(2000, 8000);
            let want = (mark - 1..size).find(|&i| data[i as usize] == b'\n').unwrap() + 1;
            assert_eq!(*c, want, "the cut after {from}");
            from = *c;
        }
        assert!(from + ((size - from) / 4).clamp(2000, 8000) >= size, "no cut missing at the end");
        assert!(cuts.len() > 8 && cuts.iter().any(|c| *c < 9000) && cuts.last().unwrap() - cuts[cuts.len() - 2] < 2100, "{cuts:?}");
        assert!(grid(&mut f, size, size).unwrap().is_empty(), "a file of one chunk is not cut");
        let jobs = jobs(vec![local_input(&path).unwrap()], 8000, false).unwrap();
        let ranges: Vec<(u64, Option<u64>)> = jobs.iter().map(|j| match j {
            Job::Range { start, end, .. } => (*start, *end),
            _ => panic!("a plain file is read in ranges"),
        }).collect();
        assert_eq!(ranges.len(), cuts.len() + 1);
        assert_eq!(ranges[0].0, 0);
        assert!(ranges.windows(2).all(|w| w[0].1 == Some(w[1].0)));
        assert_eq!(ranges.last().unwrap().1, None);
        assert_eq!(jobs[0].input().kind.get(), Some(&LineKind::Records));
        // compressed: one stream
        let gz = dir.path().join("f.gz");
        std::fs::write(&gz, crate::write::gzip(&data).unwrap()).unwrap();
        assert!(matches!(&jobs_of(&gz)[..], [Job::Stream(_)]));
    }

    fn jobs_of(p: &Path) -> Vec<Job> {
        jobs(vec![local_input(p).unwrap()], 8000, false).unwrap()
    }

    #[test]
    fn ids_and_arrival_times_come_from_the_path() {
        assert_eq!(arrival_from_path("s3://b/raw/dt=2026-11-21/hr=13/s-1.json.gz"), Some(1_795_266_000_000));
        assert_eq!(arrival_from_path("a/dt=2026-11-21/x"), None);
        let a = id_for("x.ndjson", "/a/x.ndjson");
        assert_eq!(a, id_for("x.ndjson", "/a/x.ndjson"), "stable");
        assert_ne!(a, id_for("x.ndjson", "/b/x.ndjson"), "two inputs named alike never share an id");
        assert!(a.as_str().starts_with("x.ndjson-") && a.as_str().len() == 17, "{a}");
    }
}
