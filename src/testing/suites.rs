//! Conformance suites: what every implementation of an I/O edge must do,
//! run against the in-memory twin in unit tests and against the real
//! service (moto) in integration tests. Each panics naming the first
//! broken promise.

use crate::buffers::{Sealed, SealedBody, Trigger};
use crate::catalog::{Catalog, TableFile};
use crate::checkpoint::{DestKind, FlushIntent, Resume, ShardCheckpoint};
use crate::decode::Decoder;
use crate::ids::{Position, ShardId};
use crate::schema::TableSchema;
use crate::source::lease::{Lease, LeaseStore, Update};
use crate::source::{Source, SourceEvent};
use std::collections::BTreeMap;
use crate::store::Store;
use crate::write::{ParquetOptions, RowBuffer, Sink};
use std::sync::Arc;

/// The table the catalog suite registers partitions of: hourly, keyed by `kind`.
pub fn catalog_suite_schema(table: &str) -> TableSchema {
    TableSchema::parse("suite.toml", &suite_text(table)).expect("suite schema")
}

fn prefix(schema: &TableSchema, hour: i64, kind: &str) -> String {
    let mut out = String::new();
    crate::partition::render(&schema.partition, hour * 3_600_000, &[Some(kind.into())], &mut out);
    out
}

/// A catalog opened for [`catalog_suite_schema`] with nothing registered:
/// registration makes every partition listed once, with its values
/// unescaped, however often and in whatever groups it is registered; a
/// compatible schema update is taken. `list` gives the partitions the
/// catalog holds, each as its values.
pub async fn catalog_suite(c: &mut dyn Catalog, schema: &TableSchema, mut list: impl AsyncFnMut() -> Vec<Vec<String>>) {
    let file = |p: String| TableFile { key: format!("{p}s-00000000000000000001-0.snappy.parquet"), prefix: p, records: 1, bytes: 100 };
    let sorted = |mut v: Vec<Vec<String>>| {
        v.sort();
        v
    };
    assert!(list().await.is_empty(), "a new table has no partitions");
    let a = prefix(schema, 490_000, "click");
    let b = prefix(schema, 490_001, "a/b=c");
    c.register(&[file(a.clone()), file(b.clone()), file(a.clone())]).await.expect("register");
    let want = sorted(vec![vec!["2025-11-24".into(), "16".into(), "click".into()], vec!["2025-11-24".into(), "17".into(), "a/b=c".into()]]);
    assert_eq!(sorted(list().await), want, "two partitions, values unescaped");
    c.register(&[file(b.clone())]).await.expect("registering again is harmless");
    assert_eq!(sorted(list().await), want, "no partition twice");
    // more than one call's worth (Glue takes 100 per BatchCreatePartition)
    let many: Vec<TableFile> = (0..150).map(|h| file(prefix(schema, 490_100 + h, "view"))).collect();
    c.register(&many).await.expect("register 150");
    let all = list().await;
    assert_eq!(all.len(), 152, "every partition of a large group");
    assert_eq!(all.iter().filter(|v| v[2] == "view").count(), 150);
    let mut wider = TableSchema::parse("suite.toml", &format!("{}[[columns]]\nname = \"added\"\ntype = \"bigint\"\n", suite_text(&schema.table))).expect("wider schema");
    c.update_schema(&mut wider).await.expect("a compatible schema update");
    assert_eq!(list().await.len(), 152, "partitions stay through a schema update");
}

fn suite_text(table: &str) -> String {
    format!("table = \"{table}\"\n[[columns]]\nname = \"id\"\ntype = \"string\"\n[[columns]]\nname = \"ts\"\ntype = \"timestamp\"\n[[columns]]\nname = \"kind\"\ntype = \"string\"\n[partition]\ntime = {{ column = \"ts\", granularity = \"hour\" }}\nkeys = [\"kind\"]\n")
}

/// A lease table: rows are created once; taking, renewing, updating and
/// releasing are fenced by the counter (and the owner), each bumping it; a
/// stale or foreign write changes nothing and is no error; checkpoints and
/// intents (large ones too) read back as written. `shard_prefix` keeps the
/// rows of one run apart from others in a shared table.
pub async fn lease_store_suite<L: LeaseStore>(store: &L, shard_prefix: &str) {
    store.ensure_table().await.expect("ensure_table");
    store.ensure_table().await.expect("ensure_table again");
    let a = ShardId::new(&format!("{shard_prefix}-a"));
    let parent = ShardId::new(&format!("{shard_prefix}-p"));
    assert!(store.create(&Lease::new(a.clone(), vec![parent.clone()])).await.unwrap(), "a new row");
    assert!(!store.create(&Lease::new(a.clone(), vec![])).await.unwrap(), "the row exists: not replaced");
    let row = |all: Vec<Lease>| all.into_iter().find(|l| l.shard == a).expect("the row is listed");
    let l = row(store.list().await.unwrap());
    assert_eq!((l.owner.as_deref(), l.counter, &l.parents, l.ended, &l.intent), (None, 0, &vec![parent], false, &None));
    assert_eq!(l.checkpoint, ShardCheckpoint::default());

    let c1 = store.take(&a, "w1", 0).await.unwrap().expect("take at the row's counter");
    assert!(c1 > 0);
    assert_eq!(store.take(&a, "w2", 0).await.unwrap(), None, "take at a stale counter");
    let mut cp = ShardCheckpoint { resume: Resume::At(Position::offset(42)), ..Default::default() };
    for i in 0..1000 {
        cp.done.insert(format!("table:dt=2026-01-01/hr=00/kind=k{i:04}/"), Position::offset(1000 + i));
    }
    let intent = vec![FlushIntent { kind: DestKind::Table, prefix: "dt=2026-01-01/hr=00/".into(), first: Position::offset(42), last: Position::offset(99) }];
    let u = Update { checkpoint: Some(&cp), intent: Some(Some(&intent)), ended: false };
    let c2 = store.update(&a, "w1", c1, u.clone()).await.unwrap().expect("update by the owner at its counter");
    assert!(c2 > c1);
    assert_eq!(store.update(&a, "w1", c1, u.clone()).await.unwrap(), None, "update at a stale counter");
    assert_eq!(store.update(&a, "w2", c2, u.clone()).await.unwrap(), None, "update by another owner");
    let l = row(store.list().await.unwrap());
    assert_eq!((l.owner.as_deref(), l.counter), (Some("w1"), c2));
    assert_eq!(l.checkpoint, cp, "a checkpoint of 1000 destinations reads back");
    assert_eq!(l.intent.as_deref(), Some(&intent[..]));
    let c3 = store.update(&a, "w1", c2, Update { checkpoint: None, intent: Some(None), ended: false }).await.unwrap().expect("clear the intent");
    let l = row(store.list().await.unwrap());
    assert_eq!((l.intent, &l.checkpoint), (None, &cp), "the intent cleared, the checkpoint kept");
    let c4 = store.update(&a, "w1", c3, Update::default()).await.unwrap().expect("a renewal");
    assert!(c4 > c3);
    let end = ShardCheckpoint { resume: Resume::After(Position::offset(120)), ..Default::default() };
    let c5 = store.update(&a, "w1", c4, Update { checkpoint: Some(&end), intent: Some(None), ended: true }).await.unwrap().expect("end");
    let l = row(store.list().await.unwrap());
    assert!(l.ended && l.checkpoint == end);
    assert!(!store.release(&a, "w2", c5).await.unwrap(), "release by another owner");
    assert!(!store.release(&a, "w1", c4).await.unwrap(), "release at a stale counter");
    assert!(store.release(&a, "w1", c5).await.unwrap(), "release by the owner");
    let l = row(store.list().await.unwrap());
    assert_eq!(l.owner, None);
    assert!(store.take(&a, "w2", l.counter).await.unwrap().is_some(), "a released lease is taken at once");
}

/// A table format: a sealed buffer becomes one object under a key made of
/// its partition, shard and first position, holding its rows; writing the
/// same content again replaces that object. `store` is where `sink` writes.
pub async fn sink_suite(sink: &dyn Sink, store: &Store) {
    let schema = Arc::new(TableSchema::parse("t.toml", "table = \"t\"\n[[columns]]\nname = \"id\"\ntype = \"string\"\n[[columns]]\nname = \"n\"\ntype = \"bigint\"\n").unwrap());
    let sealed = || {
        let mut rows = RowBuffer::new(&schema, ParquetOptions { chunk_in_bytes: 16, ..Default::default() });
        let mut dec = Decoder::new(schema.clone(), 1 << 20);
        for i in 0..5 {
            let rec = format!("{{\"id\":\"r{i}\",\"n\":{i}}}");
            dec.parse(rec.as_bytes()).unwrap().append_to(&mut rows.cols).unwrap();
            rows.row_added(rec.len(), &schema);
        }
        Sealed {
            shard: ShardId::new("shardId-000000000007"),
            kind: DestKind::Table,
            prefix: "dt=2026-12-06/hr=23/".into(),
            first: Position::offset(500),
            last: Position::offset(900),
            records: 5,
            trigger: Trigger::Records,
            body: SealedBody::Rows(rows),
        }
    };
    let before = store.keys().await;
    let w1 = sink.write(&mut sealed(), &schema).await.expect("write");
    assert_eq!(w1.key, "dt=2026-12-06/hr=23/shardId-000000000007-00000000000000000500-0.snappy.parquet");
    let first = store.get(&w1.key).await;
    assert_eq!(first.len() as u64, w1.bytes);
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(first.clone()).unwrap().build().unwrap();
    let ids: Vec<String> = reader
        .flat_map(|b| {
            let b = b.unwrap();
            let col = arrow_array::cast::AsArray::as_string::<i32>(b.column(0)).clone();
            col.iter().map(|v| v.unwrap().to_string()).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(ids, ["r0", "r1", "r2", "r3", "r4"], "the object holds the rows");
    let w2 = sink.write(&mut sealed(), &schema).await.expect("write again");
    assert_eq!(w2.key, w1.key, "the same content, the same key");
    assert_eq!(store.get(&w1.key).await, first, "the same bytes");
    let mut after = store.keys().await;
    after.retain(|k| !before.contains(k));
    assert_eq!(after, [w1.key], "one object");
}

/// Where a source's records come from, for [`source_suite`]: writes
/// records into shards and opens the source over them.
pub trait SourceRig {
    type S: Source;
    /// Appends `records` to shard `name` (a file, a segment, a stream shard).
    fn append(&mut self, name: &str, records: &[Vec<u8>]);
    /// Opens the source, resuming from the checkpoints committed before
    /// (for sources that keep them).
    fn open(&mut self) -> Self::S;
    /// Whether the source keeps committed checkpoints across opens.
    fn replayable(&self) -> bool;
    /// The shard the records appended to `name` come from.
    fn shard(&self, name: &str) -> ShardId {
        ShardId::new(name)
    }
}

/// Reads `src` until it finishes or has had nothing new `idle` times in a
/// row: per shard, (position, bytes) of every record in order.
async fn drain<S: Source>(src: &mut S, idle: usize) -> BTreeMap<ShardId, Vec<(Position, Vec<u8>)>> {
    let mut out: BTreeMap<ShardId, Vec<(Position, Vec<u8>)>> = BTreeMap::new();
    let mut quiet = 0;
    while quiet < idle {
        match src.next_event().await.expect("next_event") {
            Some(SourceEvent::Batch(b)) => {
                quiet = 0;
                let got = out.entry(b.shard.clone()).or_default();
                got.extend(b.iter().map(|(p, _, d)| (p.clone(), d.to_vec())));
                src.recycle(b);
            }
            Some(SourceEvent::Finished) => break,
            Some(_) => quiet = 0,
            None => {
                quiet += 1;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    }
    out
}

/// A source: every record comes once, per shard in position order (the
/// positions strictly ascending) with its bytes, blank lines and batch
/// sizes notwithstanding; a committed checkpoint is where a replayable
/// source resumes after it is opened again.
pub async fn source_suite<R: SourceRig>(rig: &mut R) {
    let shards = ["seg-a", "seg-b", "seg-c"];
    let record = |s: usize, i: usize| format!("{{\"s\":{s},\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(i * 131 % 3000)).into_bytes();
    let mut want: BTreeMap<ShardId, Vec<Vec<u8>>> = BTreeMap::new();
    for (s, name) in shards.iter().enumerate() {
        let recs: Vec<Vec<u8>> = (0..400).map(|i| record(s, i)).collect();
        rig.append(name, &recs);
        want.insert(rig.shard(name), recs);
    }
    let mut src = rig.open();
    let got = drain(&mut src, 50).await;
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "every shard");
    for (shard, recs) in &got {
        let bytes: Vec<&Vec<u8>> = recs.iter().map(|r| &r.1).collect();
        assert_eq!(bytes, want[shard].iter().collect::<Vec<_>>(), "{shard}: every record once, in order");
        assert!(recs.windows(2).all(|w| w[0].0 < w[1].0), "{shard}: positions ascend");
    }
    if !rig.replayable() {
        return;
    }
    // resume after the 100th record of each shard
    for (shard, recs) in &got {
        let cp = ShardCheckpoint { resume: Resume::After(recs[99].0.clone()), ..Default::default() };
        assert!(src.commit(shard, cp).await.expect("commit"), "{shard}: the commit is taken");
    }
    src.close().await.expect("close");
    drop(src);
    let mut again = rig.open();
    let rest = drain(&mut again, 50).await;
    for (shard, recs) in &rest {
        let bytes: Vec<&Vec<u8>> = recs.iter().map(|r| &r.1).collect();
        assert_eq!(bytes, want[shard][100..].iter().collect::<Vec<_>>(), "{shard}: read again from after the checkpoint");
    }
    assert_eq!(rest.len(), shards.len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::catalog::MemoryCatalog;
    use crate::testing::leases::MemoryLeases;
    use crate::write::HiveParquet;

    /// NDJSON files in a directory: spool segments, or `convert` inputs.
    struct Dir(tempfile::TempDir, BTreeMap<String, Vec<u8>>);

    impl Dir {
        fn new() -> Dir {
            Dir(tempfile::tempdir().unwrap(), BTreeMap::new())
        }
        fn write(&mut self, name: &str, records: &[Vec<u8>]) {
            let f = self.1.entry(name.to_string()).or_default();
            for (i, r) in records.iter().enumerate() {
                f.extend_from_slice(r);
                f.extend_from_slice(if i % 7 == 3 { b"\r\n\n  \n" } else { b"\n" }); // blank lines too
            }
            std::fs::write(self.0.path().join(name), &*f).unwrap();
        }
    }

    struct SpoolRig(Dir);
    impl SourceRig for SpoolRig {
        type S = crate::source::spool::SpoolSource;
        fn append(&mut self, name: &str, records: &[Vec<u8>]) {
            self.0.write(name, records);
        }
        fn open(&mut self) -> Self::S {
            crate::source::spool::SpoolSource::open(self.0 .0.path(), None, 1 << 20).unwrap()
        }
        fn replayable(&self) -> bool {
            true
        }
    }

    /// `convert`'s inputs: a plain file (read in ranges), a gzip file of
    /// two members and a zstd file (decoded as streams), cut in small units.
    struct UnitsRig(tempfile::TempDir, BTreeMap<String, Vec<u8>>);
    impl UnitsRig {
        fn path(&self, name: &str) -> std::path::PathBuf {
            self.0.path().join(match name {
                "seg-b" => "seg-b.gz",
                "seg-c" => "seg-c.zst",
                n => n,
            })
        }
    }
    impl SourceRig for UnitsRig {
        type S = crate::source::units::UnitSource;
        fn append(&mut self, name: &str, records: &[Vec<u8>]) {
            let f = self.1.entry(name.to_string()).or_default();
            for (i, r) in records.iter().enumerate() {
                f.extend_from_slice(r);
                f.extend_from_slice(if i % 7 == 3 { b"\r\n\n  \n" } else { b"\n" });
            }
            let bytes = match name {
                "seg-b" => {
                    let half = f.len() / 2;
                    [crate::write::gzip(&f[..half]).unwrap(), crate::write::gzip(&f[half..]).unwrap()].concat()
                }
                "seg-c" => zstd::encode_all(&f[..], 3).unwrap(),
                _ => f.clone(),
            };
            std::fs::write(self.path(name), bytes).unwrap();
        }
        fn open(&mut self) -> Self::S {
            use crate::source::inputs;
            let chunk = 16 << 10;
            let all: Vec<_> = self.1.keys().map(|n| inputs::local_input(&self.path(n)).unwrap()).collect();
            let work = crate::source::work::Work::new(inputs::jobs(all, chunk, false).unwrap(), 4 << 20, false);
            crate::source::units::UnitSource::new(work, tokio::runtime::Handle::current(), chunk, 1 << 20)
        }
        fn replayable(&self) -> bool {
            false
        }
        fn shard(&self, name: &str) -> ShardId {
            crate::source::inputs::local_input(&self.path(name)).unwrap().id
        }
    }

    struct MemoryRig(BTreeMap<ShardId, Vec<(Position, i64, Vec<u8>)>>);
    impl SourceRig for MemoryRig {
        type S = crate::testing::source::MemorySource;
        fn append(&mut self, name: &str, records: &[Vec<u8>]) {
            let recs = self.0.entry(ShardId::new(name)).or_default();
            for r in records {
                recs.push((Position::offset(recs.len() as u64 * 10), 0, r.clone()));
            }
        }
        fn open(&mut self) -> Self::S {
            crate::testing::source::MemorySource::new(self.0.clone(), BTreeMap::new(), 37)
        }
        fn replayable(&self) -> bool {
            false // the twin keeps its commits in the value, not across opens
        }
    }

    #[tokio::test]
    async fn spool_convert_and_memory_sources_conform() {
        source_suite(&mut SpoolRig(Dir::new())).await;
        source_suite(&mut UnitsRig(tempfile::tempdir().unwrap(), BTreeMap::new())).await;
        source_suite(&mut MemoryRig(BTreeMap::new())).await;
    }

    #[tokio::test]
    async fn the_memory_lease_table_conforms() {
        lease_store_suite(&MemoryLeases::default(), "shardId-suite").await;
    }

    #[tokio::test]
    async fn the_memory_catalog_conforms() {
        let schema = catalog_suite_schema("suite");
        let mut c = MemoryCatalog::new();
        let log = c.log();
        catalog_suite(&mut c, &schema, async || log.lock().unwrap().partitions.clone()).await;
        assert_eq!(log.lock().unwrap().schemas.len(), 1);
    }

    #[tokio::test]
    async fn hive_parquet_conforms_in_memory_and_in_a_directory() {
        let mem = Store::memory();
        sink_suite(&HiveParquet { store: mem.clone() }, &mem).await;
        let dir = tempfile::tempdir().unwrap();
        let local = Store::open(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        sink_suite(&HiveParquet { store: local.clone() }, &local).await;
    }
}
