//! A catalog pinned to one table version, for one commit attempt.
//!
//! iceberg-rust's `Transaction::commit` loads the table again and applies
//! its actions to whatever it finds, so a commit whose snapshot summary was
//! built from an older version (shard checkpoints carried forward from
//! it) could land on a newer one. Through [`Pinned`] that load fails unless
//! the table is still at the metadata location the commit was built from;
//! the caller reloads, re-checks and rebuilds. Every other call is passed
//! through.

use async_trait::async_trait;
use iceberg::table::Table;
use iceberg::{Catalog, Error, ErrorKind, Namespace, NamespaceIdent, Result, TableCommit, TableCreation, TableIdent};
use std::collections::HashMap;

#[derive(Debug)]
pub struct Pinned<'a> {
    pub inner: &'a dyn Catalog,
    /// The metadata location the commit was built from.
    pub at: String,
}

/// The error a moved table gives: a commit conflict the library does not retry.
pub fn moved(ident: &TableIdent) -> Error {
    Error::new(ErrorKind::CatalogCommitConflicts, format!("table {ident} moved since the commit was built")).with_retryable(false)
}

#[async_trait]
impl Catalog for Pinned<'_> {
    async fn list_namespaces(&self, parent: Option<&NamespaceIdent>) -> Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }
    async fn create_namespace(&self, namespace: &NamespaceIdent, properties: HashMap<String, String>) -> Result<Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }
    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }
    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        self.inner.namespace_exists(namespace).await
    }
    async fn update_namespace(&self, namespace: &NamespaceIdent, properties: HashMap<String, String>) -> Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }
    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        self.inner.drop_namespace(namespace).await
    }
    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }
    async fn create_table(&self, namespace: &NamespaceIdent, creation: TableCreation) -> Result<Table> {
        self.inner.create_table(namespace, creation).await
    }
    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        let t = self.inner.load_table(table).await?;
        if t.metadata_location() != Some(self.at.as_str()) {
            return Err(moved(table));
        }
        Ok(t)
    }
    async fn drop_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.drop_table(table).await
    }
    async fn purge_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.purge_table(table).await
    }
    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        self.inner.table_exists(table).await
    }
    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> Result<()> {
        self.inner.rename_table(src, dest).await
    }
    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }
    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        self.inner.update_table(commit).await
    }
}
