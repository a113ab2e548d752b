//! In-memory twin of a catalog: the partitions registered, and each
//! register call's new partitions in order (shared with the test that made
//! it through [`MemoryCatalog::log`]).

use crate::catalog::{Catalog, CatalogError, Known, TableFile};
use crate::partition::prefix_values;
use crate::schema::TableSchema;
use futures::future::BoxFuture;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct MemoryCatalog {
    known: Known,
    log: Arc<Mutex<CatalogLog>>,
}

/// What a [`MemoryCatalog`] was asked to do.
#[derive(Default, Debug, Clone)]
pub struct CatalogLog {
    /// Per register call: the prefixes new to the catalog, sorted.
    pub calls: Vec<Vec<String>>,
    /// Every partition's values, in registration order.
    pub partitions: Vec<Vec<String>>,
    /// Versions of the schemas the table was brought to.
    pub schemas: Vec<String>,
}

impl MemoryCatalog {
    pub fn new() -> MemoryCatalog {
        MemoryCatalog::default()
    }
    /// A handle on the log, which stays readable after the catalog moved.
    pub fn log(&self) -> Arc<Mutex<CatalogLog>> {
        self.log.clone()
    }
}

impl Catalog for MemoryCatalog {
    fn register<'a>(&'a mut self, files: &'a [TableFile]) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async move {
            let new = self.known.new_ones(files.iter().map(|f| f.prefix.as_str()));
            if !new.is_empty() {
                self.known.insert_all(&new);
                let mut log = self.log.lock().unwrap();
                log.partitions.extend(new.iter().map(|p| prefix_values(p)));
                log.calls.push(new);
            }
            Ok(())
        })
    }
    fn update_schema<'a>(&'a mut self, s: &'a mut TableSchema) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async move {
            self.log.lock().unwrap().schemas.push(s.version.clone());
            Ok(())
        })
    }
    fn calls(&self) -> (u64, u64) {
        (self.log.lock().unwrap().calls.len() as u64, 0)
    }
}
