//! Object storage: `s3://bucket/prefix/`, `file:///dir/` or a plain directory.
//!
//! Input: a destination URL and options (endpoint override, SSE-KMS key).
//! Output: [`Store::put`] writing whole objects under that prefix — one PUT
//! for small objects, multipart above [`MULTIPART_THRESHOLD`]. Writes of the
//! same key replace the object atomically (S3 semantics; the local store
//! writes a temporary file and renames it), which is what makes replays
//! idempotent. Failure: [`StoreError`]; transient S3 errors (5xx, throttling,
//! timeouts) are retried by object_store's client with exponential backoff
//! and jitter before they surface here.

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::sync::Arc;

pub const MULTIPART_THRESHOLD: usize = 16 << 20;
const PART_SIZE: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{url}: unsupported URL; use s3://bucket/prefix/, file:///path/ or a directory path")]
    BadUrl { url: String },
    #[error("{url}: cannot create directory: {source}")]
    Dir { url: String, source: std::io::Error },
    #[error("{url}: {source}")]
    Backend { url: String, source: object_store::Error },
}

#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Endpoint override (moto, MinIO, VPC endpoints); else AWS_ENDPOINT_URL or AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub kms_key_id: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

impl Store {
    pub fn open(url: &str, opts: &StoreOptions) -> Result<Store, StoreError> {
        let bad = || StoreError::BadUrl { url: url.to_string() };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.len() < 3 {
                return Err(bad());
            }
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            let endpoint = opts.endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok()).or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
            if let Some(ep) = endpoint {
                b = b.with_endpoint(&ep).with_allow_http(ep.starts_with("http://")).with_virtual_hosted_style_request(false);
            }
            let region = opts.region.clone().or_else(|| std::env::var("AWS_REGION").ok()).or_else(|| std::env::var("AWS_DEFAULT_REGION").ok());
            if let Some(r) = region {
                b = b.with_region(r);
            }
            if let Some(k) = &opts.kms_key_id {
                b = b.with_sse_kms_encryption(k);
            }
            let s3 = b.build().map_err(|source| StoreError::Backend { url: url.to_string(), source })?;
            return Ok(Store { inner: Arc::new(s3), prefix: norm_prefix(prefix), url: url.to_string() });
        }
        let dir = match url.strip_prefix("file://") {
            Some(p) if p.starts_with('/') => p.to_string(),
            Some(_) => return Err(bad()),
            None if url.contains("://") => return Err(bad()),
            None => url.to_string(),
        };
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Dir { url: url.to_string(), source })?;
        let fs = LocalFileSystem::new_with_prefix(&dir).map_err(|source| StoreError::Backend { url: url.to_string(), source })?;
        Ok(Store { inner: Arc::new(fs), prefix: String::new(), url: url.to_string() })
    }

    /// An in-memory store (the twin used by unit tests).
    pub fn memory() -> Store {
        Store { inner: Arc::new(object_store::memory::InMemory::new()), prefix: String::new(), url: "memory:///".into() }
    }

    /// Every key below this store's prefix, sorted.
    pub async fn keys(&self) -> Vec<String> {
        use futures::TryStreamExt;
        let prefix = ObjPath::from(self.prefix.as_str());
        let mut keys: Vec<String> = self
            .inner
            .list(Some(&prefix))
            .map_ok(|m| m.location.to_string()[self.prefix.len()..].to_string())
            .try_collect()
            .await
            .unwrap_or_default();
        keys.sort();
        keys
    }

    /// The objects below `prefix` (relative to this store's prefix), listed
    /// page by page: (key, size, last modified in epoch ms), sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64, i64)>, StoreError> {
        use futures::TryStreamExt;
        let full = ObjPath::parse(format!("{}{prefix}", self.prefix).trim_end_matches('/')).map_err(|e| StoreError::Backend { url: format!("{}{prefix}", self.url), source: e.into() })?;
        let mut out: Vec<(String, u64, i64)> = self
            .inner
            .list(Some(&full))
            .map_ok(|m| (m.location.to_string()[self.prefix.len()..].to_string(), m.size, m.last_modified.timestamp_millis()))
            .try_collect()
            .await
            .map_err(|source| StoreError::Backend { url: format!("{}{prefix}", self.url), source })?;
        out.sort();
        Ok(out)
    }

    /// The bytes of the object at `key`, as they come.
    pub async fn get_stream(&self, key: &str) -> Result<futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>, StoreError> {
        let err = |source| StoreError::Backend { url: format!("{}{key}", self.url), source };
        let path = self.path(key).map_err(|e| err(e.into()))?;
        Ok(self.inner.get(&path).await.map_err(err)?.into_stream())
    }

    /// The object at `key` (tests read back what was written); panics when
    /// it cannot be read.
    pub async fn get(&self, key: &str) -> bytes::Bytes {
        let path = self.path(key).expect("a valid key");
        self.inner.get(&path).await.expect("object exists").bytes().await.expect("object reads")
    }

    /// The object path of `key`, taken as it is: keys are already escaped
    /// as Hive escapes partition values (`kind=a%2Fb`), and the S3 key, the
    /// local file name and the catalog's partition location must all be
    /// exactly that (escaping again would make `kind=a%252Fb`).
    fn path(&self, key: &str) -> Result<ObjPath, object_store::path::Error> {
        ObjPath::parse(format!("{}{key}", self.prefix))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Writes (or replaces) the object at `key` below this store's prefix.
    pub async fn put(&self, key: &str, data: PutPayload) -> Result<(), StoreError> {
        let err = |source| StoreError::Backend { url: format!("{}{key}", self.url), source };
        let path = self.path(key).map_err(|e| err(e.into()))?;
        if data.content_length() < MULTIPART_THRESHOLD {
            self.inner.put(&path, data).await.map_err(err)?;
        } else {
            let upload = self.inner.put_multipart(&path).await.map_err(err)?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            for part in data {
                w.put(part);
            }
            w.finish().await.map_err(err)?;
        }
        Ok(())
    }
}

fn norm_prefix(p: &str) -> String {
    let p = p.trim_matches('/');
    if p.is_empty() {
        String::new()
    } else {
        format!("{p}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key with Hive's escapes is the object's name as it is, in a local
    /// directory (and so in S3: the same path) and in the listing.
    #[tokio::test]
    async fn escaped_keys_are_stored_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().to_str().unwrap(), &StoreOptions::default()).unwrap();
        let key = "dt=2026-12-06/kind=a%2Fb%3Dc/kind2=é %25/f.json.gz";
        s.put(key, PutPayload::from_static(b"x")).await.unwrap();
        assert!(dir.path().join("dt=2026-12-06/kind=a%2Fb%3Dc/kind2=é %25/f.json.gz").is_file(), "{:?}", walk(dir.path()));
        assert_eq!(s.keys().await, [key]);
        assert_eq!(&s.get(key).await[..], b"x");
        let m = Store::memory();
        m.put(key, PutPayload::from_static(b"y")).await.unwrap();
        assert_eq!(m.keys().await, [key]);
    }

    fn walk(d: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(d).unwrap().flatten().flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path().display().to_string()] }).collect()
    }
}
