//! The durable read state of a directory of segment files (the spool, the
//! front door's log): per segment, its arrival time and its checkpoint.
//!
//! Input: segments seen, checkpoints committed, segments removed. Output:
//! a JSON state file replaced atomically (write, fsync, rename, fsync the
//! directory) on every change, so a restart after a crash or kill -9 finds
//! each segment's last committed checkpoint. Failure: [`StateError`] naming
//! the file, with what to do about an unreadable one.

use crate::checkpoint::ShardCheckpoint;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("segment state {path}: {message}")]
pub struct StateError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegState {
    pub arrival_ms: i64,
    pub checkpoint: ShardCheckpoint,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    segments: BTreeMap<String, SegState>,
}

pub struct SegmentState {
    path: PathBuf,
    file: StateFile,
}

impl SegmentState {
    /// Loads the state file at `path` (none yet: every segment from its start).
    pub fn load(path: &Path) -> Result<SegmentState, StateError> {
        let err = |message: String| StateError { path: path.display().to_string(), message };
        let file = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| err(format!("unreadable ({e}); restore it or delete it to re-read every segment from the start")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile::default(),
            Err(e) => return Err(err(e.to_string())),
        };
        Ok(SegmentState { path: path.to_path_buf(), file })
    }

    pub fn get(&self, name: &str) -> Option<&SegState> {
        self.file.segments.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.file.segments.contains_key(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &SegState)> {
        self.file.segments.iter()
    }

    /// Records a new segment (not saved until [`SegmentState::save`]).
    pub fn add(&mut self, name: &str, arrival_ms: i64) {
        self.file.segments.entry(name.to_string()).or_insert(SegState { arrival_ms, checkpoint: ShardCheckpoint::default() });
    }

    /// Stores a segment's checkpoint durably.
    pub fn commit(&mut self, name: &str, cp: ShardCheckpoint) -> Result<(), StateError> {
        if let Some(st) = self.file.segments.get_mut(name) {
            st.checkpoint = cp;
        }
        self.save()
    }

    /// Forgets a segment durably (its file is gone).
    pub fn remove(&mut self, name: &str) -> Result<(), StateError> {
        self.file.segments.remove(name);
        self.save()
    }

    pub fn save(&self) -> Result<(), StateError> {
        let err = |e: std::io::Error| StateError { path: self.path.display().to_string(), message: e.to_string() };
        let tmp = self.path.with_extension("json.tmp");
        let data = serde_json::to_vec_pretty(&self.file).expect("state serializes");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(err)?;
            f.write_all(&data).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        if let Some(parent) = self.path.parent() {
            if let Ok(d) = std::fs::File::open(parent) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}
