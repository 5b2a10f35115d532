//! The `[remote]` table of a pipeline file: where the shared cache is
//! (`url`, and `endpoint`, `region` for S3-compatible servers). Credentials
//! never come from here: a key that looks like one is an error saying where
//! they go instead.

use toml::de::{DeTable, DeValue};

use super::{Diag, did_you_mean, type_name};

/// The shared cache a pipeline file names; `None` fields: not set there.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RemoteSpec {
    /// `s3://bucket/prefix` or `file:///path`.
    pub url: Option<String>,
    /// An S3-compatible server's address, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

const KEYS: &[&str] = &["url", "endpoint", "region"];

/// Keys that would hold a secret: refused, with where it belongs.
const SECRETS: &[&str] = &[
    "access_key",
    "access_key_id",
    "aws_access_key_id",
    "secret",
    "secret_key",
    "secret_access_key",
    "aws_secret_access_key",
    "session_token",
    "token",
    "password",
    "credentials",
];

/// Whether a url names a remote pai can use: `s3://bucket[/prefix]` or
/// `file:///absolute/path`.
pub fn check_url(url: &str) -> Result<(), String> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let bucket = rest.split('/').next().unwrap_or("");
        if bucket.is_empty() {
            return Err(format!("`{url}` names no bucket (s3://BUCKET/PREFIX)"));
        }
        if rest.contains('@') {
            return Err(format!(
                "`{url}` holds credentials; give them with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ));
        }
        return Ok(());
    }
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(format!(
                "`{url}` is not an absolute path (file:///path/to/folder)"
            ));
        }
        return Ok(());
    }
    Err(format!(
        "`{url}` is not a remote pai knows: use s3://BUCKET/PREFIX or file:///PATH"
    ))
}

pub(super) fn parse(table: &DeTable, diags: &mut Vec<Diag>) -> RemoteSpec {
    let mut r = RemoteSpec::default();
    for (k, v) in table.iter() {
        let key = k.get_ref().as_ref();
        let lower = key.to_ascii_lowercase();
        if SECRETS.contains(&lower.as_str()) || lower.contains("secret") {
            diags.push(Diag {
                span: k.span(),
                message: format!("`{key}` in [remote]: credentials never go in the pipeline file"),
                help: Some(
                    "remove it (and rotate it if this file was shared); set AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY in the environment instead"
                        .into(),
                ),
            });
            continue;
        }
        match (key, v.get_ref()) {
            ("url", DeValue::String(s)) => match check_url(s) {
                Ok(()) => r.url = Some(s.to_string()),
                Err(m) => diags.push(Diag {
                    span: v.span(),
                    message: m,
                    help: Some("e.g. url = \"s3://team-cache/pai\"".into()),
                }),
            },
            ("endpoint", DeValue::String(s)) => {
                if s.starts_with("http://") || s.starts_with("https://") {
                    r.endpoint = Some(s.to_string());
                } else {
                    diags.push(Diag {
                        span: v.span(),
                        message: format!("`endpoint` {s:?} is not an http(s) address"),
                        help: Some("e.g. endpoint = \"http://127.0.0.1:9000\"".into()),
                    });
                }
            }
            ("region", DeValue::String(s)) => r.region = Some(s.to_string()),
            (k @ ("url" | "endpoint" | "region"), other) => diags.push(Diag {
                span: v.span(),
                message: format!("`{k}` must be a string, found {}", type_name(other)),
                help: Some(
                    match k {
                        "url" => "url = \"s3://team-cache/pai\"",
                        "endpoint" => "endpoint = \"http://127.0.0.1:9000\"",
                        _ => "region = \"us-east-1\"",
                    }
                    .into(),
                ),
            }),
            (other, _) => diags.push(Diag {
                span: k.span(),
                message: format!("unknown key `{other}` in [remote]"),
                help: did_you_mean(other, KEYS)
                    .or_else(|| Some(format!("[remote] takes {}", KEYS.join(", ")))),
            }),
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_s3_or_absolute_folders() {
        assert!(check_url("s3://b").is_ok());
        assert!(check_url("s3://b/p/q").is_ok());
        assert!(check_url("file:///tmp/x").is_ok());
        assert!(check_url("s3:///p").is_err());
        assert!(check_url("file://rel").is_err());
        assert!(check_url("http://x").is_err());
        assert!(
            check_url("s3://KEY:SECRET@b")
                .unwrap_err()
                .contains("AWS_ACCESS_KEY_ID")
        );
    }
}
