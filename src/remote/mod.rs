//! The shared remote cache: the same action keys and BLAKE3 objects as the
//! local store, in a bucket (or a folder), behind one small trait.
//!
//! Layout under the remote's prefix: `cas/<blake3>` (objects, immutable) and
//! `ac/<action key>` (records, written once with put-if-absent, after every
//! object they name). The store knows nothing of this module; the engine asks
//! [`Cache`] (the chain's remote half) before it runs a stale node.
//!
//! - [`folder`]: a local folder (`file:///path`), for tests and for teams on
//!   a shared disk;
//! - [`s3`]: S3 and S3-compatible servers through `object_store`, with a
//!   small tokio runtime of its own (nothing else in pai is async);
//! - [`chain`]: lookups, verified downloads into the local store, and
//!   write-through uploads.

pub mod chain;
pub mod folder;
pub mod s3;

use std::io::Write;
use std::path::Path;

pub use chain::{Cache, Mode, Traffic};

/// Why a remote request failed. A miss is not an error (`Ok(None)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteError {
    /// Not reachable, too slow, or answering with server errors: the build
    /// goes on locally.
    Unavailable(String),
    /// The remote refused the credentials or the request (401, 403).
    Denied(String),
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            RemoteError::Unavailable(m) => write!(f, "unreachable: {m}"),
            RemoteError::Denied(m) => write!(f, "access denied: {m}"),
        }
    }
}

impl std::error::Error for RemoteError {}

pub type RResult<T> = Result<T, RemoteError>;

/// A content-addressed remote: objects by BLAKE3 hash, records by action key.
/// Implementations check nothing about content; [`Cache`] hashes every byte
/// it downloads.
pub trait Remote: Send + Sync {
    /// The remote as the user configured it (`s3://bucket/prefix`), for
    /// messages; never holds credentials.
    fn url(&self) -> &str;
    /// Streams object `hash` into `dst`; `Ok(false)`: the remote has none.
    fn get_object(&self, hash: &str, dst: &mut dyn Write) -> RResult<bool>;
    /// The object's size, if the remote has it.
    fn head_object(&self, hash: &str) -> RResult<Option<u64>>;
    /// Uploads a file as object `hash`; readers see all of it or nothing.
    fn put_object(&self, hash: &str, src: &Path) -> RResult<()>;
    /// The record of an action key, if the remote has one.
    fn get_record(&self, key: &str) -> RResult<Option<Vec<u8>>>;
    /// Writes a record unless one is there: `Ok(true)` written, `Ok(false)`
    /// another writer was first (its record stands).
    fn put_record_if_absent(&self, key: &str, bytes: &[u8]) -> RResult<bool>;
}

/// Access key and secret, from the environment (never from Pipeline.toml).
/// `Debug` shows neither.
#[derive(Clone, Default)]
pub struct Credentials {
    pub key_id: String,
    pub secret: String,
    pub token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("Credentials(..)")
    }
}

/// Where the remote is and how to reach it; the CLI fills it from the
/// `[remote]` table and the environment (which wins).
#[derive(Clone, Debug, Default)]
pub struct RemoteConfig {
    pub url: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub credentials: Option<Credentials>,
    /// Seconds a request may take before the remote counts as down.
    pub timeout_secs: u64,
}

/// Opens the remote a configuration names (no request is made yet).
pub fn open(cfg: &RemoteConfig) -> anyhow::Result<Box<dyn Remote>> {
    crate::spec::remote::check_url(&cfg.url).map_err(crate::spec::UsageError)?;
    if let Some(path) = cfg.url.strip_prefix("file://") {
        return Ok(Box::new(folder::Folder::new(Path::new(path), &cfg.url)));
    }
    Ok(Box::new(s3::S3::new(cfg)?))
}

/// Object and record names under a remote's prefix; a name that is not a
/// hash (or action key) is refused before any path is made of it.
pub fn object_name(hash: &str) -> RResult<String> {
    checked(hash).map(|h| format!("cas/{h}"))
}

pub fn record_name(key: &str) -> RResult<String> {
    checked(key).map(|k| format!("ac/{k}"))
}

fn checked(s: &str) -> RResult<&str> {
    if is_hex64(s) {
        Ok(s)
    } else {
        Err(RemoteError::Unavailable(format!("`{s}` is not a hash")))
    }
}

/// Whether `s` is a 64-digit lowercase hex name (a hash or an action key):
/// nothing else is ever put into a remote path.
pub fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The access key and secret of `profile` in the text of an AWS shared
/// credentials file (`~/.aws/credentials`: `[name]` sections of `key = value`).
pub fn profile_credentials(text: &str, profile: &str) -> Option<Credentials> {
    let mut section = String::new();
    let (mut key_id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name
                .trim()
                .trim_start_matches("profile ")
                .trim()
                .to_string();
            continue;
        }
        if section != profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => key_id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(Credentials {
        key_id: key_id?,
        secret: secret?,
        token,
    })
}
