//! Any bytes as records: pushing them never panics, and each becomes
//! exactly one row or one error line (and one raw line). Run with
//! `cargo fuzz run pipeline` (see README); the bounded version of this
//! check runs in `cargo test` (pipeline::tests::every_record_is_one_row_...).
#![no_main]

use lakehose::buffers::Limits;
use lakehose::ids::{Position, ShardId};
use lakehose::pipeline::Pipeline;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let schema = Arc::new(lakehose::schema::TableSchema::parse("events.toml", include_str!("../../schemas/events.toml")).unwrap());
    let mut p = Pipeline::new(schema, Limits::default(), 4096).with_raw_backup(true);
    let shard = ShardId::new("fuzz");
    // the input is several records, split at 0xff bytes (never in UTF-8 text)
    let records: Vec<&[u8]> = data.split(|&b| b == 0xff).collect();
    for (i, r) in records.iter().enumerate() {
        p.push(&shard, Position::offset(i as u64), 0, r);
    }
    let sealed = p.take_all();
    let s = p.stats();
    assert_eq!(s.records_in as usize, records.len());
    assert_eq!(s.rows + s.error_total(), records.len() as u64, "one row or one error line per record");
    let rows: usize = sealed.iter().filter(|s| s.kind == lakehose::checkpoint::DestKind::Table).map(|s| s.records).sum();
    assert_eq!(rows as u64, s.rows);
    let raw: usize = sealed.iter().filter(|s| s.kind == lakehose::checkpoint::DestKind::Raw).map(|s| s.records).sum();
    assert_eq!(raw, records.len(), "one raw line per record");
});
