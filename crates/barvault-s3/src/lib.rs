//! The object storage adapter of barvault: the same store on S3 and its compatibles (MinIO,
//! Ceph RGW, Cloudflare R2, GCS's S3 API), through the `object_store` crate.
//!
//! The layout is the file store's, as keys under a prefix: `{prefix}/stocks/1d/AAPL.csv`,
//! `.parquet`, `{key}.backup` and the records under `{prefix}/.barvault/meta/...`. The CSV
//! and Parquet objects are written by the same codecs as the files, byte for byte, so
//! pandas, polars, DuckDB or Spark read them straight from the bucket, and the records are
//! the slotted record files of `barvault-metadata`, so a store copied from a disk to a
//! bucket (or back) with plain uploads opens and verifies clean.
//!
//! There are no lock files: every write is a conditional PUT against the version read (the
//! object's ETag, `If-Match`; `If-None-Match: *` to create), atomic on the server, and a
//! record is written only while the object it describes still holds what it records.
//! [`ObjectBarStore`] keeps versions of series, [`ObjectMetadataStore`] the records,
//! [`ObjectHousekeeping`] surveys the prefix (pending multipart uploads are its leftovers)
//! and [`ConditionalWrites`] is the series-lock port that excludes nobody. [`Bucket`] is
//! the connection they share.

mod bucket;
mod error;
mod housekeeping;
mod locks;
mod metadata;
mod options;
mod store;
mod uploads;

#[cfg(feature = "test-server")]
pub mod testing;

pub use bucket::{Bucket, MD5_METADATA, PART_SIZE};
pub use housekeeping::ObjectHousekeeping;
pub use locks::ConditionalWrites;
pub use metadata::ObjectMetadataStore;
pub use options::{S3Options, S3Url, check_key, env_key, is_secret, masked};
pub use store::ObjectBarStore;
