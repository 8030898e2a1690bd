//! A local S3-compatible server for tests: moto (`pip install 'moto[server]'`), started on
//! 127.0.0.1 on a free port, one bucket created, stopped on drop. No test touches any
//! other address.
//!
//! The server is found through `BARVAULT_MOTO_SERVER` (the `moto_server` script that
//! `.ci/run` installs into its venv), else `moto_server` on `PATH`, else the CI venv under
//! `target/`. Without one a test prints that it is skipped and why, except under CI
//! (`CI` set), where a missing server is a failure.
//!
//! moto checks a PUT's condition and then writes, with no lock between the two, so its
//! threaded server cannot prove conditional writes atomic under a true race. By default
//! the harness runs moto's application in a single-threaded server instead (requests are
//! handled one at a time, so each conditional write is atomic); [`MotoServer::start_threaded`]
//! runs `moto_server` itself.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bucket::Bucket;
use crate::options::{S3Options, S3Url};

/// The credentials moto accepts (any).
pub const ACCESS_KEY: &str = "barvault-test";
pub const SECRET_KEY: &str = "barvault-test-secret";
pub const REGION: &str = "us-east-1";

/// moto's application in a single-threaded werkzeug server.
const SERIAL_SERVER: &str = r#"
import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
run_simple("127.0.0.1", int(sys.argv[1]), DomainDispatcherApplication(create_backend_app),
           threaded=False, request_handler=MotoRequestHandler)
"#;

/// A running moto server; killed on drop.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    port: u16,
}

/// The `moto_server` script to use, if any.
pub fn moto_server_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BARVAULT_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ci-venv/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("moto_server")).find(|p| p.is_file()))
}

/// The Python interpreter of a console script (its `#!` line, also through `env`).
fn interpreter_of(script: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(script).ok()?;
    let mut words = text.lines().next()?.strip_prefix("#!")?.split_whitespace();
    let mut program = words.next()?;
    if program.ends_with("/env") {
        program = words.next()?;
    }
    program.contains("python").then(|| PathBuf::from(program))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free local port")
}

impl MotoServer {
    /// A single-threaded moto server (atomic conditional writes), or `None` after printing
    /// why the calling test is skipped. Under CI a missing server panics.
    pub fn start() -> Option<Self> {
        Self::launch(false)
    }

    /// `moto_server` itself (threaded: concurrent requests, conditions not atomic).
    pub fn start_threaded() -> Option<Self> {
        Self::launch(true)
    }

    fn launch(threaded: bool) -> Option<Self> {
        let Some(script) = moto_server_path() else {
            let why = "no moto_server found (set BARVAULT_MOTO_SERVER, or run `bash .ci/run`, which installs \
                       moto[server] into target/ci-venv)";
            assert!(std::env::var_os("CI").is_none(), "{why}; CI must have it");
            eprintln!("skipped: {why}");
            return None;
        };
        // Held until the server listens, so that no other server of this process is given
        // the same free port meanwhile (tests run in parallel threads).
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _starting = STARTING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let port = free_port();
        let mut command = match (threaded, interpreter_of(&script)) {
            (false, Some(python)) => {
                let mut c = Command::new(python);
                c.arg("-c").arg(SERIAL_SERVER).arg(port.to_string());
                c
            }
            _ => {
                let mut c = Command::new(&script);
                c.arg("-H").arg("127.0.0.1").arg("-p").arg(port.to_string());
                c
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let mut server = MotoServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("moto ({}) exited with {status} before listening", script.display());
            }
            assert!(Instant::now() < deadline, "moto did not listen on 127.0.0.1:{port} within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("moto ({}) exited with {status}: port {port} was taken", script.display());
        }
        Some(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The configuration of a client of this server (as an `[object_store]` table holds it).
    pub fn options(&self) -> Vec<(String, String)> {
        [
            ("endpoint", self.endpoint()),
            ("allow_http", "true".into()),
            ("access_key_id", ACCESS_KEY.into()),
            ("secret_access_key", SECRET_KEY.into()),
            ("region", REGION.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The `AWS_*` environment of a process that uses this server.
    pub fn env(&self) -> Vec<(String, String)> {
        self.options()
            .into_iter()
            .map(|(k, v)| match k.as_str() {
                "endpoint" => ("AWS_ENDPOINT_URL".to_string(), v),
                other => (format!("AWS_{}", other.to_ascii_uppercase()), v),
            })
            .collect()
    }

    /// Creates `bucket` (moto does not check signatures, so a plain request does).
    pub fn create_bucket(&self, bucket: &str) {
        use std::io::{Read, Write};
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        let request = format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        conn.write_all(request.as_bytes()).expect("send CreateBucket");
        let mut answer = String::new();
        let _ = conn.read_to_string(&mut answer);
        let status = answer.split_whitespace().nth(1).unwrap_or_default();
        assert!(status.starts_with('2') || status == "409", "creating bucket {bucket}: {answer}");
    }

    /// A client of `s3://bucket/prefix` on this server (the bucket is created).
    pub fn bucket(&self, bucket: &str, prefix: &str) -> Bucket {
        self.create_bucket(bucket);
        let url = S3Url { bucket: bucket.into(), prefix: prefix.into() };
        Bucket::open(&url, &S3Options::new(self.options())).expect("a client of the test server")
    }

    /// Stops the server in place (SIGSTOP): requests hang as they would on a dead network.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let status = Command::new("kill").arg(which).arg(self.child.id().to_string()).status().expect("kill");
        assert!(status.success(), "kill {which} {}", self.child.id());
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-CONT").arg(self.child.id().to_string()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MotoServer {
    /// A client of `s3://bucket/prefix` with extra options (`stale_upload_secs`, ...).
    pub fn bucket_with(&self, bucket: &str, prefix: &str, extra: &[(&str, &str)]) -> Bucket {
        self.create_bucket(bucket);
        let url = S3Url { bucket: bucket.into(), prefix: prefix.into() };
        let options = self.options().into_iter().chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Bucket::open(&url, &S3Options::new(options)).expect("a client of the test server")
    }

    /// Starts a multipart upload of `key` (the whole key) and uploads one part, leaving it
    /// pending, as a writer killed in the middle of an upload does; its upload id.
    pub async fn leave_pending_upload(&self, bucket: &str, key: &str) -> String {
        use object_store::multipart::MultipartStore;
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_region(REGION)
            .build()
            .expect("client");
        let path = object_store::path::Path::from(key);
        let id = s3.create_multipart(&path).await.expect("create multipart upload");
        s3.put_part(&path, &id, 0, vec![7u8; 5 << 20].into()).await.expect("upload a part");
        id
    }
}

impl Bucket {
    /// The bytes of the object at `relative`, read as any client would.
    pub async fn read_object(&self, relative: &str) -> Option<Vec<u8>> {
        self.get(relative).await.expect("read an object").map(|(b, _)| b.to_vec())
    }

    /// A plain upload of `bytes` at `relative`, as `aws s3 cp` makes: no condition and no
    /// barvault metadata.
    pub async fn upload(&self, relative: &str, bytes: Vec<u8>) {
        use object_store::ObjectStoreExt;
        let path = object_store::path::Path::from(self.key(relative));
        self.store().put(&path, bytes.into()).await.expect("a plain upload");
    }

    /// The keys of every object under the prefix, relative to it.
    pub async fn keys(&self) -> Vec<String> {
        self.list("").await.expect("list").into_iter().map(|(k, _)| k).collect()
    }

    /// The pending multipart uploads under the prefix, as (relative key, upload id).
    pub async fn pending(&self) -> Vec<(String, String)> {
        let uploads = self.pending_uploads().await.expect("list uploads");
        uploads.into_iter().filter_map(|u| Some((self.relative(&u.key)?.to_string(), u.id))).collect()
    }
}
