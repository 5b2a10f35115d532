//! S3 and S3-compatible servers through the Arrow project's `object_store`
//! (path-style requests, any endpoint, conditional PUT for records). It is
//! async; a two-thread tokio runtime owned by [`S3`] runs its requests, so
//! the rest of pai stays synchronous and never sees tokio.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as OPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, WriteMultipart,
};

use super::{RResult, Remote, RemoteConfig, RemoteError, object_name, record_name};

/// Objects at least this large go up in parts (S3's single PUT holds 5 GB;
/// parts also keep memory flat).
const MULTIPART_BYTES: u64 = 64 << 20;
const PART_BYTES: usize = 16 << 20;

pub struct S3 {
    store: Arc<AmazonS3>,
    prefix: String,
    url: String,
    rt: tokio::runtime::Runtime,
    /// Strings removed from every message (the credentials, should a server
    /// or client echo them).
    secrets: Vec<String>,
}

impl S3 {
    pub fn new(cfg: &RemoteConfig) -> anyhow::Result<S3> {
        let rest = cfg.url.strip_prefix("s3://").unwrap_or(&cfg.url);
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // rustls without a built-in provider: ring, installed once per process
        // (an error means one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timeout = Duration::from_secs(cfg.timeout_secs.max(1));
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(cfg.region.as_deref().unwrap_or("us-east-1"))
            .with_virtual_hosted_style_request(false)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(timeout)
                    .with_connect_timeout(timeout.min(Duration::from_secs(3)))
                    .with_allow_http(true),
            )
            // One quick retry: a remote that does not answer in a few seconds
            // is treated as down and the build goes on locally.
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_millis(500),
                    base: 2.0,
                },
                max_retries: 1,
                retry_timeout: timeout,
            });
        if let Some(e) = &cfg.endpoint {
            b = b.with_endpoint(e.trim_end_matches('/'));
        }
        let mut secrets = Vec::new();
        if let Some(c) = &cfg.credentials {
            b = b
                .with_access_key_id(&c.key_id)
                .with_secret_access_key(&c.secret);
            secrets.push(c.key_id.clone());
            secrets.push(c.secret.clone());
            if let Some(t) = &c.token {
                b = b.with_token(t);
                secrets.push(t.clone());
            }
        }
        secrets.retain(|s| s.len() >= 4);
        let store = b.build().map_err(|e| {
            anyhow::anyhow!(
                "remote cache {}: {}",
                cfg.url,
                scrub(&e.to_string(), &secrets)
            )
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pai-remote")
            .enable_all()
            .build()?;
        Ok(S3 {
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_string(),
            url: cfg.url.clone(),
            rt,
            secrets,
        })
    }

    fn path(&self, name: &str) -> OPath {
        if self.prefix.is_empty() {
            OPath::from(name)
        } else {
            OPath::from(format!("{}/{name}", self.prefix))
        }
    }

    fn err(&self, e: object_store::Error) -> RemoteError {
        classify(&e, &self.secrets)
    }
}

fn scrub(s: &str, secrets: &[String]) -> String {
    let mut s = s.to_string();
    for x in secrets {
        s = s.replace(x.as_str(), "***");
    }
    s
}

/// 401 and 403 (and the S3 codes for bad keys and signatures) are a refusal;
/// everything else is a remote that cannot serve now.
fn classify(e: &object_store::Error, secrets: &[String]) -> RemoteError {
    let msg = scrub(&format!("{e}"), secrets);
    let mut chain = msg.clone();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        chain.push_str(&format!(": {s}"));
        src = s.source();
    }
    let chain = scrub(&chain, secrets);
    let denied = matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || [
        "403 Forbidden",
        "401 Unauthorized",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
    ]
    .iter()
    .any(|w| chain.contains(w));
    // The most telling part of a long chain: the last cause, which names the
    // server's answer or the network error.
    let short = chain
        .rsplit(": ")
        .find(|p| !p.trim().is_empty())
        .unwrap_or(&msg)
        .trim()
        .to_string();
    let short = if short.len() < 12 {
        chain.clone()
    } else {
        short
    };
    if denied {
        let code = [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "403 Forbidden",
            "401 Unauthorized",
        ]
        .into_iter()
        .find(|w| chain.contains(w))
        .unwrap_or("refused");
        RemoteError::Denied(code.to_string())
    } else {
        RemoteError::Unavailable(short)
    }
}

impl Remote for S3 {
    fn url(&self) -> &str {
        &self.url
    }

    fn get_object(&self, hash: &str, dst: &mut dyn Write) -> RResult<bool> {
        let name = object_name(hash)?;
        let path = self.path(&name);
        self.rt.block_on(async {
            let r = match self.store.get(&path).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(self.err(e)),
            };
            let mut stream = r.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.err(e))?;
                dst.write_all(&chunk)
                    .map_err(|e| RemoteError::Unavailable(format!("writing the download: {e}")))?;
            }
            Ok(true)
        })
    }

    fn head_object(&self, hash: &str) -> RResult<Option<u64>> {
        let name = object_name(hash)?;
        let path = self.path(&name);
        self.rt.block_on(async {
            match self.store.head(&path).await {
                Ok(m) => Ok(Some(m.size)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.err(e)),
            }
        })
    }

    fn put_object(&self, hash: &str, src: &Path) -> RResult<()> {
        let name = object_name(hash)?;
        let path = self.path(&name);
        let local =
            |e: std::io::Error| RemoteError::Unavailable(format!("reading {}: {e}", src.display()));
        let mut f = std::fs::File::open(src).map_err(local)?;
        let len = f.metadata().map_err(local)?.len();
        self.rt.block_on(async {
            if len < MULTIPART_BYTES {
                let mut buf = Vec::with_capacity(len as usize);
                f.read_to_end(&mut buf).map_err(local)?;
                self.store
                    .put(&path, PutPayload::from(buf))
                    .await
                    .map_err(|e| self.err(e))?;
                return Ok(());
            }
            // In parts: the object appears only when the upload completes.
            let upload = self
                .store
                .put_multipart(&path)
                .await
                .map_err(|e| self.err(e))?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            let mut buf = vec![0u8; PART_BYTES];
            loop {
                let n = f.read(&mut buf).map_err(local)?;
                if n == 0 {
                    break;
                }
                w.wait_for_capacity(4).await.map_err(|e| self.err(e))?;
                w.write(&buf[..n]);
            }
            w.finish().await.map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    fn get_record(&self, key: &str) -> RResult<Option<Vec<u8>>> {
        let name = record_name(key)?;
        let path = self.path(&name);
        self.rt.block_on(async {
            match self.store.get(&path).await {
                Ok(r) => Ok(Some(r.bytes().await.map_err(|e| self.err(e))?.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.err(e)),
            }
        })
    }

    fn put_record_if_absent(&self, key: &str, bytes: &[u8]) -> RResult<bool> {
        let name = record_name(key)?;
        let path = self.path(&name);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.rt.block_on(async {
            match self
                .store
                .put_opts(&path, PutPayload::from(bytes.to_vec()), opts)
                .await
            {
                Ok(_) => Ok(true),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => Ok(false),
                Err(e) => Err(self.err(e)),
            }
        })
    }
}
