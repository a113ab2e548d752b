//! A lease table in a SQLite file, for processes on one host (or one
//! volume with working file locks) that have no DynamoDB: the Kafka source
//! on premises, the examples.
//!
//! Input: lease operations, as for [`DynamoLeases`](super::lease::DynamoLeases).
//! Output: one row per shard; every write but `create` is a single
//! `UPDATE … WHERE counter = ? [AND owner = ?]` that bumps the counter, so
//! SQLite's file lock makes each one atomic across processes. A failed
//! condition is `Ok(None)`/`Ok(false)`, never an error. Checkpoints and
//! intents are stored as JSON text. Failure: [`LeaseError`] naming the
//! file for anything else (cannot open, locked past the busy timeout).
//! Not for network file systems whose locks are unreliable (NFS): use
//! DynamoDB there.

use super::lease::{Lease, LeaseError, LeaseStore, Update};
use crate::checkpoint::ShardCheckpoint;
use crate::ids::ShardId;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::Row;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub struct SqliteLeases {
    path: PathBuf,
    pool: SqlitePool,
}

impl SqliteLeases {
    /// Opens (creating if absent) the lease file.
    pub async fn open(path: &Path) -> Result<SqliteLeases, LeaseError> {
        let err = |m: String| LeaseError::Table { table: path.display().to_string(), message: m };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| err(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(2).connect_with(opts).await.map_err(|e| err(e.to_string()))?;
        Ok(SqliteLeases { path: path.to_path_buf(), pool })
    }

    fn err(&self, e: sqlx::Error) -> LeaseError {
        LeaseError::Table { table: self.path.display().to_string(), message: e.to_string() }
    }

    fn row(&self, r: &sqlx::sqlite::SqliteRow) -> Result<Lease, LeaseError> {
        let key: String = r.get("lease_key");
        let bad = |message: String| LeaseError::BadRow { table: self.path.display().to_string(), key: key.clone(), message };
        let checkpoint = match r.get::<Option<String>, _>("checkpoint") {
            Some(c) => serde_json::from_str(&c).map_err(|e| bad(format!("checkpoint: {e}")))?,
            None => ShardCheckpoint::default(),
        };
        let intent = match r.get::<Option<String>, _>("intent") {
            Some(c) => Some(serde_json::from_str(&c).map_err(|e| bad(format!("intent: {e}")))?),
            None => None,
        };
        let parents: Vec<String> = serde_json::from_str(&r.get::<String, _>("parents")).map_err(|e| bad(format!("parents: {e}")))?;
        Ok(Lease {
            shard: ShardId::new(&key),
            owner: r.get("owner"),
            counter: r.get::<i64, _>("counter") as u64,
            checkpoint,
            ended: r.get::<i64, _>("ended") != 0,
            intent,
            parents: parents.iter().map(|p| ShardId::new(p)).collect(),
        })
    }
}

impl LeaseStore for SqliteLeases {
    async fn ensure_table(&self) -> Result<(), LeaseError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS leases (lease_key TEXT PRIMARY KEY, owner TEXT, counter INTEGER NOT NULL, \
             checkpoint TEXT, ended INTEGER NOT NULL DEFAULT 0, intent TEXT, parents TEXT NOT NULL)",
        )
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        let rows = sqlx::query("SELECT * FROM leases ORDER BY lease_key").fetch_all(&self.pool).await.map_err(|e| self.err(e))?;
        rows.iter().map(|r| self.row(r)).collect()
    }

    async fn create(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let parents: Vec<&str> = lease.parents.iter().map(|p| p.as_str()).collect();
        let r = sqlx::query("INSERT OR IGNORE INTO leases (lease_key, owner, counter, parents) VALUES (?, NULL, 0, ?)")
            .bind(lease.shard.as_str())
            .bind(serde_json::to_string(&parents).expect("strings"))
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(r.rows_affected() == 1)
    }

    async fn take(&self, shard: &ShardId, owner: &str, counter: u64) -> Result<Option<u64>, LeaseError> {
        let r = sqlx::query("UPDATE leases SET owner = ?, counter = counter + 1 WHERE lease_key = ? AND counter = ?")
            .bind(owner)
            .bind(shard.as_str())
            .bind(counter as i64)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok((r.rows_affected() == 1).then_some(counter + 1))
    }

    async fn update(&self, shard: &ShardId, owner: &str, counter: u64, u: Update<'_>) -> Result<Option<u64>, LeaseError> {
        let mut set = String::from("counter = counter + 1");
        if u.checkpoint.is_some() {
            set.push_str(", checkpoint = ?, ended = ?");
        }
        if u.intent.is_some() {
            set.push_str(", intent = ?");
        }
        let sql = format!("UPDATE leases SET {set} WHERE lease_key = ? AND counter = ? AND owner = ?");
        let mut q = sqlx::query(&sql);
        if let Some(cp) = u.checkpoint {
            q = q.bind(serde_json::to_string(cp).expect("serialisable")).bind(u.ended as i64);
        }
        if let Some(i) = u.intent {
            q = q.bind(i.map(|i| serde_json::to_string(i).expect("serialisable")));
        }
        let r = q.bind(shard.as_str()).bind(counter as i64).bind(owner).execute(&self.pool).await.map_err(|e| self.err(e))?;
        Ok((r.rows_affected() == 1).then_some(counter + 1))
    }

    async fn release(&self, shard: &ShardId, owner: &str, counter: u64) -> Result<bool, LeaseError> {
        let r = sqlx::query("UPDATE leases SET owner = NULL, counter = counter + 1 WHERE lease_key = ? AND counter = ? AND owner = ?")
            .bind(shard.as_str())
            .bind(counter as i64)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(r.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sqlite_lease_table_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteLeases::open(&dir.path().join("sub/leases.db")).await.unwrap();
        crate::testing::suites::lease_store_suite(&store, "shardId-sqlite").await;
        // a second process's view: the same file opened again sees the rows
        let other = SqliteLeases::open(&dir.path().join("sub/leases.db")).await.unwrap();
        assert_eq!(other.list().await.unwrap().len(), 1);
    }
}
