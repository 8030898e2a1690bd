//! Failures of this adapter, each with the bucket and key it concerns, converted into the
//! ports' [`StorageError`] at the boundary.
//!
//! Transient failures (timeouts, 5xx, throttling) are retried by the `object_store` client
//! with backoff before they reach this module; what arrives here is final. Permanent ones
//! get one line that says what to fix: the credentials or the IAM policy for a 403, the
//! bucket name or the endpoint for a bucket that does not exist.

use std::io;

use barvault_ports::{IoStep, StorageError};
use thiserror::Error;

/// A failed request (or an answer this adapter cannot use), with its context.
#[derive(Debug, Error)]
pub(crate) enum S3Error {
    /// 401/403: the credentials are missing or wrong, or the policy does not allow the call.
    #[error(
        "access denied by bucket {bucket:?} to {action} {key:?}: check the credentials (AWS_ACCESS_KEY_ID, \
         [object_store] in barvault.toml) and that the IAM policy allows {action}"
    )]
    Denied {
        step: IoStep,
        action: &'static str,
        bucket: String,
        key: String,
        #[source]
        source: object_store::Error,
    },
    /// The bucket is not there (or the endpoint or region does not hold it).
    #[error("bucket {bucket:?} does not exist at the configured endpoint and region (needed for {key:?})")]
    NoBucket {
        step: IoStep,
        bucket: String,
        key: String,
        #[source]
        source: object_store::Error,
    },
    /// Any other failure, after the client's retries.
    #[error("{action} {key:?} in bucket {bucket:?}: {source}")]
    Request {
        step: IoStep,
        action: &'static str,
        bucket: String,
        key: String,
        #[source]
        source: object_store::Error,
    },
    /// An answer that cannot be used (a malformed listing, a missing ETag).
    #[error("{key:?} in bucket {bucket:?}: {reason}")]
    Unusable { step: IoStep, bucket: String, key: String, reason: String },
}

impl S3Error {
    /// The error of `source`, from `action` (an S3 API name, for the IAM hint) on `key`.
    pub(crate) fn of(step: IoStep, action: &'static str, bucket: &str, key: &str, source: object_store::Error) -> Self {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        match &source {
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                S3Error::Denied { step, action, bucket, key, source }
            }
            // A missing key is an answer, handled by the callers; a missing bucket says so in
            // the error body (and a listing or an upload cannot miss anything else).
            _ if source.to_string().contains("NoSuchBucket") => S3Error::NoBucket { step, bucket, key, source },
            object_store::Error::NotFound { .. } if matches!(action, "s3:ListBucket" | "s3:PutObject") => {
                S3Error::NoBucket { step, bucket, key, source }
            }
            _ => S3Error::Request { step, action, bucket, key, source },
        }
    }

    fn step(&self) -> IoStep {
        match self {
            S3Error::Denied { step, .. }
            | S3Error::NoBucket { step, .. }
            | S3Error::Request { step, .. }
            | S3Error::Unusable { step, .. } => *step,
        }
    }

    fn url(&self) -> String {
        let (S3Error::Denied { bucket, key, .. }
        | S3Error::NoBucket { bucket, key, .. }
        | S3Error::Request { bucket, key, .. }
        | S3Error::Unusable { bucket, key, .. }) = self;
        format!("s3://{bucket}/{key}")
    }

    fn kind(&self) -> io::ErrorKind {
        match self {
            S3Error::Denied { .. } => io::ErrorKind::PermissionDenied,
            S3Error::NoBucket { .. } => io::ErrorKind::NotFound,
            S3Error::Request { source, .. } => match source {
                object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
                object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented { .. } => {
                    io::ErrorKind::Unsupported
                }
                _ => io::ErrorKind::Other,
            },
            S3Error::Unusable { .. } => io::ErrorKind::InvalidData,
        }
    }
}

impl From<S3Error> for StorageError {
    fn from(e: S3Error) -> Self {
        let (step, path, kind) = (e.step(), e.url(), e.kind());
        StorageError::Io { step, path: path.into(), source: io::Error::new(kind, e) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied() -> object_store::Error {
        object_store::Error::PermissionDenied { path: "p/stocks/1d/A.csv".into(), source: "403 Forbidden".into() }
    }

    #[test]
    fn permanent_errors_are_one_line_naming_bucket_and_key() {
        let e: StorageError = S3Error::of(IoStep::Read, "s3:GetObject", "desk", "p/stocks/1d/A.csv", denied()).into();
        let text = e.to_string();
        assert!(text.starts_with("read failed for s3://desk/p/stocks/1d/A.csv: access denied"), "{text}");
        assert!(text.contains("s3:GetObject") && !text.contains('\n'), "{text}");
        assert!(matches!(&e, StorageError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied));
        let missing = object_store::Error::NotFound { path: "x".into(), source: "NoSuchBucket: gone".into() };
        let e: StorageError = S3Error::of(IoStep::Read, "s3:GetObject", "nope", "x", missing).into();
        assert!(e.to_string().contains("bucket \"nope\" does not exist"), "{e}");
    }

    #[test]
    fn the_cause_chain_keeps_the_client_error() {
        let e: StorageError = S3Error::of(IoStep::WriteTemp, "s3:PutObject", "b", "k", denied()).into();
        let mut chain = Vec::new();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            chain.push(c.to_string());
            cause = c.source();
        }
        assert!(chain.iter().any(|c| c.contains("403 Forbidden")), "{chain:?}");
    }
}
