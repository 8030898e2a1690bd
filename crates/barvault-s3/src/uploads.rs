//! Multipart uploads that were started and never completed nor aborted: a writer killed (or
//! a server gone) in the middle of an upload leaves one, and its parts stay billed until
//! someone aborts it. `object_store` has no call to list them, so this module sends
//! `ListMultipartUploads` itself, as a request presigned by the same client (the same
//! credentials, endpoint and region).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::ClientOptions;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::signer::{SignedUrlOptions, Signer};

/// One pending multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingUpload {
    /// The key the upload would create (the whole key, prefix included).
    pub(crate) key: String,
    pub(crate) id: String,
    pub(crate) initiated: Option<DateTime<Utc>>,
}

/// Lists the pending uploads of one bucket.
#[derive(Debug)]
pub(crate) struct UploadLister {
    s3: Arc<AmazonS3>,
    http: reqwest::Client,
}

/// Pages fetched at most (1,000 uploads each).
const MAX_PAGES: usize = 100;

impl UploadLister {
    pub(crate) fn new(s3: Arc<AmazonS3>, client: &ClientOptions) -> Result<Self, String> {
        let timeout = client.get_config_value(&object_store::ClientConfigKey::Timeout);
        let timeout = timeout.and_then(|t| parse_seconds(&t)).unwrap_or(Duration::from_secs(30));
        let http = reqwest::Client::builder().timeout(timeout).build().map_err(|e| e.to_string())?;
        Ok(Self { s3, http })
    }

    /// Every pending upload whose key starts with `prefix`.
    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<PendingUpload>, String> {
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![("uploads".to_string(), String::new()), ("prefix".to_string(), prefix.to_string())];
            if let Some((key, id)) = &markers {
                query.push(("key-marker".into(), key.clone()));
                query.push(("upload-id-marker".into(), id.clone()));
            }
            let options = SignedUrlOptions::default().with_query(query);
            let url = self
                .s3
                .signed_url_opts(http::Method::GET, &Path::from(""), Duration::from_secs(300), &options)
                .await
                .map_err(|e| format!("cannot sign ListMultipartUploads: {e}"))?;
            let response = self.http.get(url).send().await.map_err(|e| format!("ListMultipartUploads: {e}"))?;
            let status = response.status();
            let body = response.text().await.map_err(|e| format!("ListMultipartUploads: {e}"))?;
            if !status.is_success() {
                let code = element(&body, "Code").unwrap_or_default();
                return Err(format!("ListMultipartUploads answered {status} {code}"));
            }
            let page = parse_page(&body);
            out.extend(page.uploads);
            match page.next {
                Some(next) => markers = Some(next),
                None => return Ok(out),
            }
        }
        Err(format!("ListMultipartUploads: more than {MAX_PAGES} pages of pending uploads"))
    }
}

/// `30 seconds`, `30s` or `30`: what object_store's timeout option holds.
fn parse_seconds(text: &str) -> Option<Duration> {
    let digits: String = text.trim().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().map(Duration::from_secs)
}

#[derive(Debug, Default, PartialEq)]
struct Page {
    uploads: Vec<PendingUpload>,
    /// The markers of the next page, when the listing is truncated.
    next: Option<(String, String)>,
}

/// The text of the first `<name>` element of `xml`, unescaped.
fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(unescape(&xml[start..end]))
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// One page of a `ListMultipartUploadsResult`.
fn parse_page(xml: &str) -> Page {
    let mut page = Page::default();
    for block in xml.split("<Upload>").skip(1) {
        let block = block.split("</Upload>").next().unwrap_or_default();
        let (Some(key), Some(id)) = (element(block, "Key"), element(block, "UploadId")) else { continue };
        let initiated = element(block, "Initiated")
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc));
        page.uploads.push(PendingUpload { key, id, initiated });
    }
    if element(xml, "IsTruncated").as_deref() == Some("true")
        && let (Some(key), Some(id)) = (element(xml, "NextKeyMarker"), element(xml, "NextUploadIdMarker"))
    {
        page.next = Some((key, id));
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_page_gives_keys_ids_times_and_the_next_markers() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>desk</Bucket><IsTruncated>true</IsTruncated>
  <NextKeyMarker>p/stocks/1m/B&amp;C.csv</NextKeyMarker><NextUploadIdMarker>u2</NextUploadIdMarker>
  <Upload><Key>p/stocks/1m/AAPL.csv</Key><UploadId>u1</UploadId><Initiated>2024-05-01T10:00:00.000Z</Initiated></Upload>
  <Upload><Key>p/stocks/1m/B&amp;C.csv</Key><UploadId>u2</UploadId></Upload>
</ListMultipartUploadsResult>"#;
        let page = parse_page(xml);
        assert_eq!(page.uploads.len(), 2);
        assert_eq!(page.uploads[0].key, "p/stocks/1m/AAPL.csv");
        assert_eq!(page.uploads[0].initiated.map(|t| t.timestamp()), Some(1_714_557_600));
        assert_eq!((page.uploads[1].key.as_str(), page.uploads[1].initiated), ("p/stocks/1m/B&C.csv", None));
        assert_eq!(page.next, Some(("p/stocks/1m/B&C.csv".into(), "u2".into())));
        let last =
            parse_page("<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>");
        assert_eq!(last, Page::default());
        assert_eq!(parse_seconds("30 seconds"), Some(Duration::from_secs(30)));
        assert_eq!(parse_seconds("5s"), Some(Duration::from_secs(5)));
    }
}
