//! The object storage part of the configuration: the `[object_store]` table of
//! barvault.toml and the `AWS_*` environment (which wins, as the other `BARVAULT_*`
//! variables win over the file), each option with its origin, secrets masked wherever
//! they are shown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{ConfigError, Origin};

/// The config file's table of object_store options.
pub(crate) const TABLE: &str = "object_store";

/// Environment variables read as object_store options (those object_store knows).
pub(crate) const AWS_PREFIX: &str = "AWS_";

/// Options with the origin of each, by key.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options(BTreeMap<String, (String, Origin)>);

impl Options {
    /// These options with `over`'s on top.
    pub(crate) fn merged_under(mut self, over: Options) -> Options {
        self.0.extend(over.0);
        self
    }

    pub(crate) fn values(&self) -> BTreeMap<String, String> {
        self.0.iter().map(|(k, (v, _))| (k.clone(), v.clone())).collect()
    }

    pub(crate) fn origins(&self) -> BTreeMap<String, Origin> {
        self.0.iter().map(|(k, (_, o))| (k.clone(), o.clone())).collect()
    }
}

/// The options the `AWS_*` variables of `env` set (`AWS_REGION` sets `aws_region`); other
/// `AWS_*` variables are other tools' business and left alone.
pub(crate) fn from_env(env: &BTreeMap<String, String>) -> Options {
    Options(
        env.iter()
            .filter_map(|(var, value)| {
                let key = barvault_s3::env_key(var)?;
                Some((canonical(&key), (value.clone(), Origin::Env(var.clone()))))
            })
            .collect(),
    )
}

/// The options of the `[object_store]` table of the file at `path`; an unknown key or a
/// value that is not a single value is an error naming the file.
pub(crate) fn from_file(path: &Path, table: BTreeMap<String, config::Value>) -> Result<Options, ConfigError> {
    let origin = Origin::File(path.to_path_buf());
    let mut out = BTreeMap::new();
    for (key, value) in table {
        let text = value.into_string().map_err(|e| ConfigError::Invalid {
            field: TABLE,
            value: key.clone(),
            origin: origin.clone(),
            allowed: format!("a single value for {TABLE}.{key}: {e}"),
        })?;
        barvault_s3::check_key(&key, &text).map_err(|allowed| ConfigError::Invalid {
            field: TABLE,
            value: format!("{key} = {}", barvault_s3::masked(&key, &text)),
            origin: origin.clone(),
            allowed,
        })?;
        out.insert(canonical(&key), (text, origin.clone()));
    }
    Ok(Options(out))
}

/// One spelling per option (`aws_region` and `region` are the same key), so that the
/// environment overrides the file whichever spelling each uses.
fn canonical(key: &str) -> String {
    let key = key.to_ascii_lowercase();
    match key.as_str() {
        "aws_endpoint_url" | "aws_endpoint" | "endpoint_url" => "endpoint".into(),
        "aws_default_region" => "default_region".into(),
        "aws_token" | "aws_session_token" | "token" => "session_token".into(),
        "aws_bucket" | "aws_bucket_name" | "bucket" => "bucket_name".into(),
        other => match other.strip_prefix("aws_") {
            Some(short) if barvault_s3::check_key(short, "").is_ok() => short.to_string(),
            _ => other.to_string(),
        },
    }
}

/// `(key, value as shown, origin)` of every option set, secrets masked.
pub(crate) fn shown<'a>(
    values: &'a BTreeMap<String, String>,
    origins: &'a BTreeMap<String, Origin>,
) -> Vec<(&'a str, String, Option<&'a Origin>)> {
    values.iter().map(|(k, v)| (k.as_str(), barvault_s3::masked(k, v), origins.get(k))).collect()
}

/// Serializes options with their secrets masked.
pub(crate) fn masked_options<S: serde::Serializer>(
    options: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(options.len()))?;
    for (k, v) in options {
        map.serialize_entry(k, &barvault_s3::masked(k, v))?;
    }
    map.end()
}

/// The store's base as a path: `s3://BUCKET/PREFIX` kept as it is (normalized), `file://`
/// and plain paths made absolute.
pub(crate) fn store_path(p: &Path) -> PathBuf {
    let Some(text) = p.to_str() else { return crate::config::absolute(p) };
    if barvault_s3::S3Url::is_object_url(text) {
        return barvault_s3::S3Url::parse(text)
            .map_or_else(|_| PathBuf::from(text.trim()), |u| PathBuf::from(u.to_string()));
    }
    match text.strip_prefix("file://") {
        Some(local) => crate::config::absolute(Path::new(local)),
        None => crate::config::absolute(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigSources, StorageConfig};

    #[test]
    fn the_table_and_the_environment_set_options_the_environment_winning() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("barvault.toml");
        std::fs::write(
            &file,
            "output_directory = \"s3://desk-bars/team\"\n[object_store]\nregion = \"eu-west-1\"\n\
             endpoint = \"http://127.0.0.1:9000\"\nallow_http = true\nsecret_access_key = \"from-the-file-secret\"\n",
        )
        .unwrap();
        let env: BTreeMap<String, String> = [
            ("AWS_REGION", "us-east-2"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_PROFILE", "ignored"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9100"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let sources = ConfigSources { file: Some(file.clone()), ..Default::default() };
        let loaded = StorageConfig::load_with_env(&sources, &env).unwrap();
        let c = &loaded.config;
        assert_eq!(c.output_directory, PathBuf::from("s3://desk-bars/team"));
        assert_eq!(c.bucket().map(|u| u.to_string()).as_deref(), Some("s3://desk-bars/team"));
        assert_eq!(c.object_store.get("region").map(String::as_str), Some("us-east-2"));
        assert_eq!(c.object_store.get("endpoint").map(String::as_str), Some("http://127.0.0.1:9100"));
        assert_eq!(c.object_store.get("allow_http").map(String::as_str), Some("true"));
        assert!(!c.object_store.contains_key("profile"));
        assert_eq!(loaded.object_store["region"], Origin::Env("AWS_REGION".into()));
        assert_eq!(loaded.object_store["secret_access_key"], Origin::File(file.clone()));
        let shown = shown(&c.object_store, &loaded.object_store);
        let secret = shown.iter().find(|(k, ..)| *k == "secret_access_key").unwrap();
        assert_eq!(secret.1, "****et");
        let json = serde_json::to_string(&loaded).unwrap();
        assert!(!json.contains("from-the-file-secret"), "{json}");

        std::fs::write(&file, "[object_store]\nregoin = \"x\"\n").unwrap();
        let err = StorageConfig::load_with_env(&sources, &BTreeMap::new()).unwrap_err().to_string();
        assert!(err.contains("regoin") && err.contains("barvault.toml"), "{err}");
        std::fs::write(&file, "output_directory = \"s3://Bad_Bucket/x\"\n").unwrap();
        let err = StorageConfig::load_with_env(&sources, &BTreeMap::new()).unwrap_err().to_string();
        assert!(err.contains("bucket name"), "{err}");
    }

    #[test]
    fn file_urls_are_directories_and_s3_urls_are_kept() {
        assert_eq!(store_path(Path::new("file:///tmp/x/../y")), PathBuf::from("/tmp/y"));
        assert_eq!(store_path(Path::new("s3://bars/a/b/")), PathBuf::from("s3://bars/a/b"));
        assert!(StorageConfig::with_output_directory("s3://bars/p").bucket().is_some());
        assert!(StorageConfig::with_output_directory("/tmp/s3-like").bucket().is_none());
    }
}
