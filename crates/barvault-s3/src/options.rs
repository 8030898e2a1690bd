//! Where a store lives (`s3://BUCKET/PREFIX`) and how to reach it: the `object_store`
//! configuration keys (the `[object_store]` table of barvault.toml and the `AWS_*`
//! environment), plus a few of barvault's own.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use object_store::aws::AmazonS3ConfigKey;

/// `s3://BUCKET/PREFIX`: a bucket and the key prefix under which the store's layout lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Url {
    pub bucket: String,
    /// Without leading or trailing `/`; empty for the bucket's root.
    pub prefix: String,
}

impl S3Url {
    /// Whether `text` names object storage (`s3://` or `s3a://`) rather than a directory.
    pub fn is_object_url(text: &str) -> bool {
        let lower = text.trim().to_ascii_lowercase();
        lower.starts_with("s3://") || lower.starts_with("s3a://")
    }

    /// Parses `s3://BUCKET[/PREFIX]`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let rest = ["s3://", "s3a://"]
            .iter()
            .find_map(|scheme| {
                text.get(..scheme.len()).filter(|s| s.eq_ignore_ascii_case(scheme)).map(|_| &text[scheme.len()..])
            })
            .ok_or_else(|| format!("{text:?} is not an s3://BUCKET/PREFIX address"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && !bucket.starts_with(['.', '-'])
            && !bucket.ends_with(['.', '-']);
        if !valid_bucket {
            return Err(format!(
                "{text:?}: {bucket:?} is not a bucket name (3 to 63 lower-case letters, digits, dots and hyphens)"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|part| part == "." || part == "..") || prefix.contains("//") {
            return Err(format!("{text:?}: the prefix may not hold empty, `.` or `..` parts"));
        }
        Ok(Self { bucket: bucket.to_string(), prefix: prefix.to_string() })
    }

    /// The key of `relative` (a `/`-separated path inside the store).
    pub fn key(&self, relative: &str) -> String {
        match self.prefix.is_empty() {
            true => relative.to_string(),
            false => format!("{}/{relative}", self.prefix),
        }
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix.is_empty() {
            true => write!(f, "s3://{}", self.bucket),
            false => write!(f, "s3://{}/{}", self.bucket, self.prefix),
        }
    }
}

impl FromStr for S3Url {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Keys of barvault's own, beside `object_store`'s.
const OWN_KEYS: [&str; 3] = ["max_retries", "retry_timeout_secs", "stale_upload_secs"];

/// Key fragments whose values are never shown.
const SECRET_MARKS: [&str; 4] = ["secret", "token", "customer_key", "password"];

/// Whether the value of `key` is a secret (masked by `barvault config`).
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_MARKS.iter().any(|m| key.contains(m))
}

/// `value` as shown to people: secrets as `****` and their last two characters when long.
pub fn masked(key: &str, value: &str) -> String {
    if !is_secret(key) {
        return value.to_string();
    }
    let chars: Vec<char> = value.chars().collect();
    match chars.len() {
        0 => String::new(),
        n if n >= 12 => format!("****{}", chars[n - 2..].iter().collect::<String>()),
        _ => "****".to_string(),
    }
}

/// The configuration key an environment variable sets, if it is one `object_store` reads
/// (`AWS_REGION` is `aws_region`); other `AWS_*` variables are not ours to judge.
pub fn env_key(var: &str) -> Option<String> {
    let key = var.strip_prefix("AWS_").map(|_| var.to_ascii_lowercase())?;
    AmazonS3ConfigKey::from_str(&key).is_ok().then_some(key)
}

/// Checks one key of the `[object_store]` table; the error names what is allowed.
pub fn check_key(key: &str, value: &str) -> Result<(), String> {
    let key = key.to_ascii_lowercase();
    if OWN_KEYS.contains(&key.as_str()) {
        return value.trim().parse::<u64>().map(|_| ()).map_err(|_| format!("{key} takes a whole number"));
    }
    AmazonS3ConfigKey::from_str(&key).map(|_| ()).map_err(|_| {
        format!(
            "not an object_store key: use the names of object_store's AmazonS3ConfigKey (access_key_id, \
             secret_access_key, session_token, region, endpoint, allow_http, ...) or one of {}",
            OWN_KEYS.join(", ")
        )
    })
}

/// The options a connection is built from: `object_store` keys and barvault's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    values: BTreeMap<String, String>,
}

impl S3Options {
    /// Options from `(key, value)` pairs, later pairs overriding earlier ones.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self { values: pairs.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect() }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    fn number(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(|v| v.trim().parse().ok())
    }

    /// The `object_store` keys, parsed; an unknown key is an error naming it.
    pub(crate) fn store_keys(&self) -> Result<Vec<(AmazonS3ConfigKey, &str)>, String> {
        self.values
            .iter()
            .filter(|(k, _)| !OWN_KEYS.contains(&k.as_str()))
            .map(|(k, v)| {
                AmazonS3ConfigKey::from_str(k).map(|key| (key, v.as_str())).map_err(|_| check_key(k, v).unwrap_err())
            })
            .collect()
    }

    /// How often the client retries a failed request (timeouts, 5xx, throttling).
    pub(crate) fn max_retries(&self) -> usize {
        self.number("max_retries").map_or(10, |n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// How long after a request's first attempt the client stops retrying it.
    pub(crate) fn retry_timeout(&self) -> Duration {
        Duration::from_secs(self.number("retry_timeout_secs").unwrap_or(180))
    }

    /// After how long a pending multipart upload counts as left by a writer that is gone.
    pub(crate) fn stale_upload_age(&self) -> Duration {
        Duration::from_secs(self.number("stale_upload_secs").unwrap_or(3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_prefix() {
        let u = S3Url::parse("s3://desk-bars/team/a/").unwrap();
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("desk-bars", "team/a"));
        assert_eq!(u.key("stocks/1d/AAPL.csv"), "team/a/stocks/1d/AAPL.csv");
        assert_eq!(u.to_string(), "s3://desk-bars/team/a");
        let root = S3Url::parse("S3://bars").unwrap();
        assert_eq!((root.key("x"), root.to_string()), ("x".to_string(), "s3://bars".to_string()));
        for bad in ["s3://", "s3://ab", "s3://Upper/x", "s3://b_b/x", "s3://bars/a/../b", "/tmp/x", "s3://bars/a//b"] {
            assert!(S3Url::parse(bad).is_err(), "{bad}");
        }
        assert!(S3Url::is_object_url("s3a://x/y") && !S3Url::is_object_url("./data"));
    }

    #[test]
    fn keys_are_checked_and_secrets_masked() {
        assert!(check_key("region", "eu-west-1").is_ok());
        assert!(check_key("AWS_ENDPOINT_URL", "http://127.0.0.1:9000").is_ok());
        assert!(check_key("max_retries", "3").is_ok());
        assert!(check_key("max_retries", "three").unwrap_err().contains("whole number"));
        assert!(check_key("regoin", "x").unwrap_err().contains("not an object_store key"));
        assert_eq!(env_key("AWS_SECRET_ACCESS_KEY").as_deref(), Some("aws_secret_access_key"));
        assert_eq!(env_key("AWS_PROFILE"), None);
        assert_eq!(env_key("HOME"), None);
        assert_eq!(masked("secret_access_key", "wJalrXUtnFEMI/K7MDENG"), "****NG");
        assert_eq!(masked("aws_session_token", "short"), "****");
        assert_eq!(masked("region", "us-east-1"), "us-east-1");
    }
}
