//! One bucket and prefix, reached through `object_store`: the few object operations the
//! stores need, each with its conditions and its errors in this adapter's terms.
//!
//! Objects are written whole: one PUT, or for objects over [`PART_SIZE`] a multipart upload
//! whose completion carries the same condition (`If-Match` on the ETag read, or
//! `If-None-Match: *` to create) and which is aborted when any step fails. Every object
//! barvault writes carries the MD5 of its bytes as user metadata (`x-amz-meta-barvault-md5`),
//! so that whether an object still holds a recorded version is one HEAD away, whatever the
//! ETag is (multipart and SSE-KMS ETags are not MD5s).

use std::sync::Arc;
use std::time::Duration;

use barvault_ports::{IoStep, StorageError};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::memory::InMemory;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, ClientOptions, GetOptions, HeaderMap, HeaderValue, ObjectStore, ObjectStoreExt,
    PutMode as StorePutMode, PutMultipartOptions, PutOptions as StorePutOptions, PutPayload, RetryConfig,
    UpdateVersion,
};

use crate::error::S3Error;
use crate::options::{S3Options, S3Url};
use crate::uploads::{PendingUpload, UploadLister};

/// Objects larger than this are uploaded in parts of this size (S3 takes 5 MiB to 5 GiB).
pub const PART_SIZE: usize = 8 << 20;

/// Parts of one object uploaded at once.
const PARTS_IN_FLIGHT: usize = 4;

/// The user metadata that holds an object's MD5 (`x-amz-meta-barvault-md5`).
pub const MD5_METADATA: &str = "barvault-md5";

/// What a write expects to find where it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Condition {
    /// No object (`If-None-Match: *`).
    Absent,
    /// The object with this ETag (`If-Match`).
    Tagged(String),
    /// Anything.
    Any,
}

/// A write that did not happen.
#[derive(Debug)]
pub(crate) enum PutError {
    /// The condition did not hold: another writer changed the object.
    Conflict(String),
    Failed(S3Error),
}

/// What a HEAD or GET tells about an object.
#[derive(Debug, Clone)]
pub(crate) struct ObjectInfo {
    pub(crate) size: u64,
    pub(crate) etag: Option<String>,
    pub(crate) modified: DateTime<Utc>,
    /// The MD5 its writer recorded in its user metadata, if barvault wrote it.
    pub(crate) md5: Option<String>,
}

impl ObjectInfo {
    /// Whether the object's bytes are known, without reading them, to have MD5 `md5`:
    /// `Some(true)` or `Some(false)` when its metadata or its ETag says, `None` when only
    /// reading it would tell (an object uploaded by another tool in parts, or encrypted
    /// with KMS, has an ETag that is not its MD5).
    pub(crate) fn holds_md5(&self, md5: &str) -> Option<bool> {
        if let Some(recorded) = &self.md5 {
            return Some(recorded == md5);
        }
        let etag = self.etag.as_deref()?.trim_matches('"');
        (etag == md5).then_some(true)
    }
}

/// Where the S3-only calls go: multipart uploads with conditions, and their listing.
#[derive(Debug)]
struct S3Calls {
    s3: Arc<AmazonS3>,
    builder: AmazonS3Builder,
    client: ClientOptions,
    lister: UploadLister,
}

/// A bucket and a prefix, and the client that reaches them.
#[derive(Debug, Clone)]
pub struct Bucket {
    inner: Arc<BucketInner>,
}

#[derive(Debug)]
struct BucketInner {
    store: Arc<dyn ObjectStore>,
    s3: Option<S3Calls>,
    url: S3Url,
    stale_upload_age: Duration,
}

impl Bucket {
    /// A client of the bucket `url` names, configured by `options` (credentials, region,
    /// endpoint, client and retry settings). Transient failures are retried with backoff
    /// by the client ([`RetryConfig`]); writes are conditional (`AWS_CONDITIONAL_PUT=etag`).
    pub fn open(url: &S3Url, options: &S3Options) -> Result<Self, StorageError> {
        let config_error = |message: String| StorageError::Config { field: "object_store".into(), message };
        let mut builder = AmazonS3Builder::new().with_bucket_name(&url.bucket);
        let mut client = ClientOptions::new();
        for (key, value) in options.store_keys().map_err(config_error)? {
            match key {
                object_store::aws::AmazonS3ConfigKey::Client(k) => client = client.with_config(k, value),
                other => builder = builder.with_config(other, value),
            }
        }
        let retry = RetryConfig {
            max_retries: options.max_retries(),
            retry_timeout: options.retry_timeout(),
            ..RetryConfig::default()
        };
        let builder = builder.with_retry(retry).with_client_options(client.clone());
        let s3 = builder.clone().build().map_err(|e| config_error(format!("{url}: {e}")))?;
        let s3 = Arc::new(s3);
        let lister = UploadLister::new(Arc::clone(&s3), &client).map_err(|e| config_error(format!("{url}: {e}")))?;
        let store: Arc<dyn ObjectStore> = s3.clone();
        Ok(Self {
            inner: Arc::new(BucketInner {
                store,
                s3: Some(S3Calls { s3, builder, client, lister }),
                url: url.clone(),
                stale_upload_age: options.stale_upload_age(),
            }),
        })
    }

    /// A bucket over any `object_store` (`InMemory` in tests): single PUTs only, and no
    /// pending uploads to survey.
    pub fn over(store: Arc<dyn ObjectStore>, url: S3Url) -> Self {
        Self { inner: Arc::new(BucketInner { store, s3: None, url, stale_upload_age: Duration::from_secs(3600) }) }
    }

    /// A fresh in-memory bucket (object_store's `InMemory`, whose conditional writes are
    /// atomic), named `memory`.
    pub fn in_memory(prefix: &str) -> Self {
        let url = S3Url { bucket: "memory".into(), prefix: prefix.trim_matches('/').to_string() };
        Self::over(Arc::new(InMemory::new()), url)
    }

    pub fn url(&self) -> &S3Url {
        &self.inner.url
    }

    /// The client underneath.
    #[cfg(feature = "test-server")]
    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    pub(crate) fn stale_upload_age(&self) -> Duration {
        self.inner.stale_upload_age
    }

    /// The key of `relative` (inside the store).
    pub(crate) fn key(&self, relative: &str) -> String {
        self.inner.url.key(relative)
    }

    /// `s3://bucket/prefix/relative`, as locations are shown.
    pub fn location(&self, relative: &str) -> String {
        format!("s3://{}/{}", self.inner.url.bucket, self.key(relative))
    }

    /// `relative`, from a key listed under the prefix.
    pub(crate) fn relative<'a>(&self, key: &'a str) -> Option<&'a str> {
        match self.inner.url.prefix.is_empty() {
            true => Some(key),
            false => key.strip_prefix(self.inner.url.prefix.as_str())?.strip_prefix('/'),
        }
    }

    fn error(&self, step: IoStep, action: &'static str, relative: &str, e: object_store::Error) -> S3Error {
        S3Error::of(step, action, &self.inner.url.bucket, &self.key(relative), e)
    }

    pub(crate) fn unusable(&self, step: IoStep, relative: &str, reason: impl Into<String>) -> S3Error {
        S3Error::Unusable {
            step,
            bucket: self.inner.url.bucket.clone(),
            key: self.key(relative),
            reason: reason.into(),
        }
    }

    fn path(&self, relative: &str) -> Path {
        Path::from(self.key(relative))
    }

    fn info(meta: &object_store::ObjectMeta, attributes: &Attributes) -> ObjectInfo {
        let md5 = attributes.get(&Attribute::Metadata(MD5_METADATA.into())).map(|v| v.as_ref().to_string());
        ObjectInfo { size: meta.size, etag: meta.e_tag.clone(), modified: meta.last_modified, md5 }
    }

    /// What is known about the object at `relative`; `None` if there is none.
    pub(crate) async fn head(&self, relative: &str) -> Result<Option<ObjectInfo>, S3Error> {
        let options = GetOptions { head: true, ..GetOptions::default() };
        match self.inner.store.get_opts(&self.path(relative), options).await {
            Ok(r) => Ok(Some(Self::info(&r.meta, &r.attributes))),
            Err(object_store::Error::NotFound { source, path }) if !is_no_bucket(&*source) => {
                tracing::trace!(%path, "no object");
                Ok(None)
            }
            Err(e) => Err(self.error(IoStep::Stat, "s3:GetObject", relative, e)),
        }
    }

    /// The bytes of the object at `relative`, with what is known about them (from the
    /// same response); `None` if there is none.
    pub(crate) async fn get(&self, relative: &str) -> Result<Option<(Bytes, ObjectInfo)>, S3Error> {
        let read = |e| self.error(IoStep::Read, "s3:GetObject", relative, e);
        let result = match self.inner.store.get_opts(&self.path(relative), GetOptions::default()).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { source, .. }) if !is_no_bucket(&*source) => return Ok(None),
            Err(e) => return Err(read(e)),
        };
        let info = Self::info(&result.meta, &result.attributes);
        let bytes = result.bytes().await.map_err(read)?;
        Ok(Some((bytes, info)))
    }

    /// Writes `bytes` (whose MD5 is `md5`) at `relative` if `condition` holds; the new
    /// object's ETag.
    pub(crate) async fn put(
        &self,
        relative: &str,
        bytes: Bytes,
        md5: &str,
        condition: &Condition,
    ) -> Result<Option<String>, PutError> {
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::Metadata(MD5_METADATA.into()), md5.to_string().into());
        match &self.inner.s3 {
            Some(s3) if bytes.len() > PART_SIZE => self.put_in_parts(s3, relative, bytes, attributes, condition).await,
            _ => self.put_whole(relative, bytes, attributes, condition).await,
        }
    }

    async fn put_whole(
        &self,
        relative: &str,
        bytes: Bytes,
        attributes: Attributes,
        condition: &Condition,
    ) -> Result<Option<String>, PutError> {
        let mode = match condition {
            Condition::Absent => StorePutMode::Create,
            Condition::Tagged(etag) => StorePutMode::Update(UpdateVersion { e_tag: Some(etag.clone()), version: None }),
            Condition::Any => StorePutMode::Overwrite,
        };
        let options = StorePutOptions { mode, attributes, ..StorePutOptions::default() };
        match self.inner.store.put_opts(&self.path(relative), PutPayload::from(bytes), options).await {
            Ok(r) => Ok(r.e_tag),
            Err(e) => Err(self.put_error(relative, e)),
        }
    }

    fn put_error(&self, relative: &str, e: object_store::Error) -> PutError {
        match e {
            object_store::Error::Precondition { .. } => {
                PutError::Conflict("the object changed since it was read".into())
            }
            object_store::Error::AlreadyExists { .. } | object_store::Error::NotModified { .. } => {
                PutError::Conflict("an object exists where none was expected".into())
            }
            e => PutError::Failed(self.error(IoStep::WriteTemp, "s3:PutObject", relative, e)),
        }
    }

    /// A multipart upload: parts a few at a time, then a completion that carries the
    /// condition; any failure aborts the upload, so no parts are left billed (an abort that
    /// fails too leaves a pending upload, which `recover` aborts).
    async fn put_in_parts(
        &self,
        s3: &S3Calls,
        relative: &str,
        bytes: Bytes,
        attributes: Attributes,
        condition: &Condition,
    ) -> Result<Option<String>, PutError> {
        let path = self.path(relative);
        let options = PutMultipartOptions { attributes, ..PutMultipartOptions::default() };
        let id = s3
            .s3
            .create_multipart_opts(&path, options)
            .await
            .map_err(|e| PutError::Failed(self.error(IoStep::CreateTemp, "s3:PutObject", relative, e)))?;
        let result = self.upload_parts(s3, relative, &path, &id, bytes, condition).await;
        if result.is_err()
            && let Err(e) = s3.s3.abort_multipart(&path, &id).await
        {
            tracing::warn!(key = %path, upload = %id, error = %e, "could not abort the multipart upload; `recover` will");
        }
        result
    }

    async fn upload_parts(
        &self,
        s3: &S3Calls,
        relative: &str,
        path: &Path,
        id: &String,
        bytes: Bytes,
        condition: &Condition,
    ) -> Result<Option<String>, PutError> {
        let failed = |e| PutError::Failed(self.error(IoStep::WriteTemp, "s3:PutObject", relative, e));
        let chunks: Vec<Bytes> =
            (0..bytes.len()).step_by(PART_SIZE).map(|at| bytes.slice(at..(at + PART_SIZE).min(bytes.len()))).collect();
        let parts: Vec<PartId> = futures::stream::iter(chunks.into_iter().enumerate())
            .map(|(i, chunk)| s3.s3.put_part(path, id, i, PutPayload::from(chunk)))
            .buffered(PARTS_IN_FLIGHT)
            .try_collect()
            .await
            .map_err(failed)?;
        // Checked once more before completing, for servers that ignore the condition on
        // a completion (the condition still goes with it, for those that honour it).
        self.check(relative, condition).await?;
        let completer = s3.completer(condition).map_err(failed)?;
        match completer.complete_multipart(path, id, parts).await {
            Ok(r) => Ok(r.e_tag),
            Err(e) => Err(self.put_error(relative, e)),
        }
    }

    /// Whether `condition` holds for the object at `relative` now.
    pub(crate) async fn check(&self, relative: &str, condition: &Condition) -> Result<(), PutError> {
        if *condition == Condition::Any {
            return Ok(());
        }
        let now = self.head(relative).await.map_err(PutError::Failed)?;
        match (condition, now.and_then(|i| i.etag)) {
            (Condition::Absent, None) => Ok(()),
            (Condition::Absent, Some(_)) => Err(PutError::Conflict("an object exists where none was expected".into())),
            (Condition::Tagged(want), Some(etag)) if *want == etag => Ok(()),
            (Condition::Tagged(_), Some(_)) => Err(PutError::Conflict("the object changed since it was read".into())),
            (Condition::Tagged(_), None) | (Condition::Any, _) => {
                Err(PutError::Conflict("the object read was removed".into()))
            }
        }
    }

    /// Copies the object at `from` over `to` on the server (no download); whether there
    /// was an object to copy.
    pub(crate) async fn copy(&self, from: &str, to: &str) -> Result<bool, S3Error> {
        match self.inner.store.copy(&self.path(from), &self.path(to)).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { source, .. }) if !is_no_bucket(&*source) => Ok(false),
            Err(e) => Err(self.error(IoStep::BackupLink, "s3:GetObject and s3:PutObject (copy)", from, e)),
        }
    }

    /// Deletes the object at `relative` (nothing if there is none).
    pub(crate) async fn delete(&self, relative: &str) -> Result<(), S3Error> {
        match self.inner.store.delete(&self.path(relative)).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { source, .. }) if !is_no_bucket(&*source) => Ok(()),
            Err(e) => Err(self.error(IoStep::Remove, "s3:DeleteObject", relative, e)),
        }
    }

    /// Every object under `relative` (a folder of the store, `""` for all of it), as
    /// (relative key, info), in key order.
    pub(crate) async fn list(&self, relative: &str) -> Result<Vec<(String, ObjectInfo)>, S3Error> {
        let prefix = match relative.is_empty() {
            true => self.inner.url.prefix.clone(),
            false => self.key(relative),
        };
        let prefix = (!prefix.is_empty()).then(|| Path::from(prefix));
        let listed: Vec<object_store::ObjectMeta> = self
            .inner
            .store
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(|e| self.error(IoStep::List, "s3:ListBucket", relative, e))?;
        let mut out: Vec<(String, ObjectInfo)> = listed
            .into_iter()
            .filter_map(|m| {
                let rel = self.relative(m.location.as_ref())?.to_string();
                Some((rel, Self::info(&m, &Attributes::new())))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Whether anything is stored under the prefix (also: whether the bucket is there).
    pub async fn has_objects(&self) -> Result<bool, StorageError> {
        let prefix = (!self.inner.url.prefix.is_empty()).then(|| Path::from(self.inner.url.prefix.clone()));
        let listed = self.inner.store.list_with_delimiter(prefix.as_ref()).await;
        let listed = listed.map_err(|e| self.error(IoStep::List, "s3:ListBucket", "", e))?;
        Ok(!listed.objects.is_empty() || !listed.common_prefixes.is_empty())
    }

    /// The multipart uploads under the prefix that were started and neither completed nor
    /// aborted (always none on a store without multipart uploads).
    pub(crate) async fn pending_uploads(&self) -> Result<Vec<PendingUpload>, S3Error> {
        let Some(s3) = &self.inner.s3 else { return Ok(Vec::new()) };
        let prefix = match self.inner.url.prefix.is_empty() {
            true => String::new(),
            false => format!("{}/", self.inner.url.prefix),
        };
        s3.lister.list(&prefix).await.map_err(|reason| self.unusable(IoStep::List, "", reason))
    }

    /// Aborts the pending upload `id` of `relative`.
    pub(crate) async fn abort(&self, relative: &str, id: &str) -> Result<(), S3Error> {
        let Some(s3) = &self.inner.s3 else { return Ok(()) };
        match s3.s3.abort_multipart(&self.path(relative), &id.to_string()).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { source, .. }) if !is_no_bucket(&*source) => Ok(()),
            Err(e) => Err(self.error(IoStep::Remove, "s3:AbortMultipartUpload", relative, e)),
        }
    }
}

impl S3Calls {
    /// A client whose requests carry the condition as a header: object_store completes a
    /// multipart upload without one, and the completion is where the object appears.
    fn completer(&self, condition: &Condition) -> Result<AmazonS3, object_store::Error> {
        let mut headers = HeaderMap::new();
        let header = match condition {
            Condition::Absent => Some(("if-none-match", "*".to_string())),
            Condition::Tagged(etag) => Some(("if-match", etag.clone())),
            Condition::Any => None,
        };
        if let Some((name, value)) = header {
            let value = HeaderValue::from_str(&value).map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: format!("ETag {value:?} is not a header value: {e}").into(),
            })?;
            headers.insert(name, value);
        }
        self.builder.clone().with_client_options(self.client.clone().with_default_headers(headers)).build()
    }
}

/// Whether a 404's body says the bucket (not the key) is missing.
fn is_no_bucket(source: &(dyn std::error::Error + Send + Sync)) -> bool {
    source.to_string().contains("NoSuchBucket")
}
