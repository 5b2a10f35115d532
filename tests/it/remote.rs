//! The shared remote cache: against a folder (`file://`, always) and against a
//! real S3 server, `s3s-fs` on 127.0.0.1 with an access key and secret so that
//! request signatures are checked (`.ci/run` installs it; elsewhere a missing
//! `s3s-fs` skips those tests with a message, under CI it fails them).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Proj, statuses, stderr, with_status};

const KEY: &str = "paitestkey";
const SECRET: &str = "paitestsecret0123456789";
const BUCKET: &str = "pai-test";

/// `pai` with the remote's credentials (and nothing of the caller's AWS set-up).
fn pai(p: &Proj, args: &[&str], secret: &str) -> Command {
    let mut c = p.cmd(args);
    for v in [
        "PAI_REMOTE",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
    ] {
        c.env_remove(v);
    }
    c.env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("PAI_REMOTE_TIMEOUT", "3");
    c
}

fn run(p: &Proj, args: &[&str]) -> Output {
    pai(p, args, SECRET).output().expect("running pai")
}

/// `pai --json build ARGS`: the document, exit code and stderr.
fn build_json(p: &Proj, args: &[&str]) -> (Value, i32, String) {
    let mut all = vec!["--json", "build"];
    all.extend_from_slice(args);
    let o = run(p, &all);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", stderr(&o)));
    (v, o.status.code().unwrap_or(-1), stderr(&o))
}

fn s3s_fs() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(Path::new(&h).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("s3s-fs"))
        .find(|p| p.is_file())
}

/// The s3s-fs binary, or `None` (skip) outside CI.
fn need_s3s() -> Option<PathBuf> {
    let found = s3s_fs();
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "s3s-fs is not installed under CI: .ci/run installs it with \
                 `cargo install s3s-fs --version 0.14.1 --features binary --locked`"
            );
        }
        eprintln!(
            "skipped: no s3s-fs (install it with `cargo install s3s-fs --version 0.14.1 \
             --features binary --locked`)"
        );
    }
    found
}

/// A real S3 server on 127.0.0.1 serving a temporary folder; stopped on drop.
struct Server {
    child: Option<Child>,
    port: u16,
    root: tempfile::TempDir,
}

impl Server {
    fn start(bin: &Path) -> Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(BUCKET)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", KEY, "--secret-key", SECRET])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting s3s-fs");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "s3s-fs did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Server {
            child: Some(child),
            port,
            root,
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }

    /// A `[remote]` table for this server under `prefix`.
    fn table(&self, prefix: &str) -> String {
        format!(
            "\n[remote]\nurl = \"s3://{BUCKET}/{prefix}\"\nendpoint = \"http://127.0.0.1:{}\"\nregion = \"us-east-1\"\n",
            self.port
        )
    }

    fn object(&self, prefix: &str, hash: &str) -> PathBuf {
        self.root
            .path()
            .join(BUCKET)
            .join(prefix)
            .join("cas")
            .join(hash)
    }

    fn records(&self, prefix: &str) -> Vec<PathBuf> {
        let dir = self.root.path().join(BUCKET).join(prefix).join("ac");
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.retain(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() == 64)
        });
        v.sort();
        v
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tiny_with(remote: &str) -> Proj {
    Proj::with_pipeline(&format!(
        "{}{remote}",
        include_str!("../../pipelines/tiny.toml")
    ))
}

/// The hash of a node's output in a project's current build.
fn output_hash(p: &Proj, node: &str, output: &str) -> String {
    let key = p.read(&format!("cache/refs/{node}"));
    let rec: Value =
        serde_json::from_str(&p.read(&format!("cache/records/{}.json", key.trim()))).unwrap();
    rec["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == output)
        .unwrap_or_else(|| panic!("{node} has no {output}"))["hash"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn machine_b_builds_final_4bit_from_the_remote_without_training() {
    let Some(bin) = need_s3s() else { return };
    let mut server = Server::start(&bin);
    let table = server.table("team");

    // Machine A builds (uploading as it goes) and pushes (nothing left to send).
    let a = tiny_with(&table);
    let t0 = Instant::now();
    let (va, code, err) = build_json(&a, &["final-4bit"]);
    let a_secs = t0.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{err}");
    let sa = statuses(&va);
    assert!(with_status(&sa, "remote").is_empty(), "{sa:?}");
    assert!(
        va["remote"]["uploaded_records"].as_u64().unwrap() >= 6,
        "{va}"
    );
    let push = run(&a, &["--json", "push"]);
    assert!(push.status.success(), "{}", stderr(&push));
    let pv: Value = serde_json::from_slice(&push.stdout).unwrap();
    assert!(
        pv["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["outcome"] == "present"),
        "{pv}"
    );
    assert!(!server.records("team").is_empty());

    // Machine B: another folder, an empty store, the same remote.
    let b = tiny_with(&table);
    let t0 = Instant::now();
    let (vb, code, err) = build_json(&b, &["final-4bit"]);
    let b_secs = t0.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{err}");
    let sb = statuses(&vb);
    assert_eq!(
        with_status(&sb, "built"),
        vec!["corpus".to_string()],
        "{sb:?}"
    );
    for n in [
        "tokenizer",
        "tokens",
        "packed",
        "init",
        "train",
        "final-4bit",
    ] {
        assert_eq!(sb[n], "remote", "{n}: {sb:?}");
    }
    assert_eq!(
        std::fs::read(b.path("cache/out/final-4bit/model.gguf")).unwrap(),
        std::fs::read(a.path("cache/out/final-4bit/model.gguf")).unwrap()
    );
    // The optimizer state (a temporary) stayed on the remote.
    let opt = output_hash(&a, "train", "optimizer.safetensors");
    assert!(
        !b.path(&format!("cache/objects/{}/{}", &opt[..2], &opt[2..]))
            .exists()
    );
    let down = vb["remote"]["downloaded_bytes"].as_u64().unwrap();
    let a_bytes: u64 = crate::common::objects(a.dir())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    eprintln!(
        "figures: machine A built final-4bit in {a_secs:.2} s ({a_bytes} bytes of objects); \
         machine B in {b_secs:.2} s, downloading {down} bytes in {} objects",
        vb["remote"]["downloaded_objects"]
    );
    // Fresh now, and `remote status` says the remote holds it all.
    let again = build_json(&b, &["final-4bit"]).0;
    assert!(with_status(&statuses(&again), "remote").is_empty());
    let st = run(&b, &["--json", "remote", "status", "final-4bit"]);
    assert!(st.status.success(), "{}", stderr(&st));
    let sv: Value = serde_json::from_slice(&st.stdout).unwrap();
    for n in sv["nodes"].as_array().unwrap() {
        if n["name"] != "corpus" {
            assert_eq!(n["remote"], "complete", "{sv}");
        }
    }

    // A damaged object in the bucket is refused and its node rebuilt here.
    let gguf = output_hash(&a, "final-4bit", "model.gguf");
    let obj = server.object("team", &gguf);
    let mut bytes = std::fs::read(&obj).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&obj, &bytes).unwrap();
    let c = tiny_with(&table);
    let (vc, code, err) = build_json(&c, &["final-4bit"]);
    assert_eq!(code, 0, "{err}");
    let sc = statuses(&vc);
    assert_eq!(sc["final-4bit"], "built", "{sc:?}");
    assert_eq!(sc["train"], "remote", "{sc:?}");
    assert!(
        err.contains("damaged") && err.contains(&gguf[..12]),
        "{err}"
    );
    assert_eq!(
        std::fs::read(c.path("cache/out/final-4bit/model.gguf")).unwrap(),
        std::fs::read(a.path("cache/out/final-4bit/model.gguf")).unwrap()
    );

    // A deleted object is a miss: its node builds here, the rest comes down.
    let tokens = output_hash(&a, "tokens", "tokens.bin");
    std::fs::remove_file(server.object("team", &tokens)).unwrap();
    let d = tiny_with(&table);
    let (vd, code, err) = build_json(&d, &["packed"]);
    assert_eq!(code, 0, "{err}");
    let sd = statuses(&vd);
    assert_eq!(sd["tokens"], "built", "{sd:?}");
    assert_eq!(sd["tokenizer"], "remote", "{sd:?}");
    assert_eq!(sd["packed"], "remote", "{sd:?}");
    assert!(!err.contains("warning"), "{err}");

    // Two builds of the same keys from two folders at once: one valid record each.
    let (e1, e2) = (
        tiny_with(&server.table("race")),
        tiny_with(&server.table("race")),
    );
    let mut c1 = pai(&e1, &["build", "packed"], SECRET)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut c2 = pai(&e2, &["build", "packed"], SECRET)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(c1.wait().unwrap().success() && c2.wait().unwrap().success());
    let recs = server.records("race");
    assert_eq!(recs.len(), 3, "tokenizer, tokens, packed: {recs:?}");
    for r in recs {
        let v: Value = serde_json::from_slice(&std::fs::read(&r).unwrap()).unwrap();
        assert_eq!(
            v["key"].as_str().unwrap(),
            r.file_name().unwrap().to_str().unwrap()
        );
        for o in v["outputs"].as_array().unwrap() {
            let h = o["hash"].as_str().unwrap();
            let got = blake3::hash(&std::fs::read(server.object("race", h)).unwrap());
            assert_eq!(got.to_hex().as_str(), h);
        }
    }

    // Wrong credentials: a clear error naming the remote, no stack trace, no secret.
    let f = tiny_with(&table);
    let o = pai(&f, &["build", "final-4bit"], "not-the-secret")
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("refused the credentials") && e.contains("s3://pai-test/team"),
        "{e}"
    );
    assert!(
        !e.contains("panicked") && !e.contains("not-the-secret"),
        "{e}"
    );
    let o = pai(&f, &["remote", "status"], "not-the-secret")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("refused the credentials"),
        "{}",
        stderr(&o)
    );

    // The server stops in the middle of a build: one warning, the build
    // finishes locally.
    let g = tiny_with(&server.table("late"));
    let child = pai(&g, &["build", "final-4bit"], SECRET)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !g.path("cache/refs/tokenizer").exists() {
        assert!(t0.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(20));
    }
    server.stop();
    let out = child.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{e}");
    assert_eq!(e.matches("warning: remote cache").count(), 1, "{e}");
    assert!(g.path("cache/out/final-4bit/model.gguf").exists());
}

#[test]
fn a_folder_remote_serves_a_second_project_and_flags_switch_it() {
    // The data end of the funnel (no GPU): machine A builds and uploads.
    let remote = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote.path().display());
    let table = format!("\n[remote]\nurl = \"{url}\"\n");
    let a = tiny_with(&table);
    let (_, code, err) = build_json(&a, &["packed"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("uploaded"), "{err}");

    // --no-remote builds locally; --remote-read-only downloads and sends nothing.
    let b = tiny_with(&table);
    let (v, _, _) = build_json(&b, &["--no-remote", "tokenizer"]);
    assert_eq!(statuses(&v)["tokenizer"], "built");
    let (v, code, err) = build_json(&b, &["--remote-read-only", "packed"]);
    assert_eq!(code, 0, "{err}");
    let s = statuses(&v);
    assert_eq!(s["tokenizer"], "fresh");
    assert_eq!(s["tokens"], "remote", "{s:?}");
    assert_eq!(s["packed"], "remote", "{s:?}");
    assert_eq!(v["remote"]["uploaded_records"], 0);
    // A node the remote lacks builds here and, read-only, is not sent.
    let records = || std::fs::read_dir(remote.path().join("ac")).unwrap().count();
    let before = records();
    let (v, code, err) = build_json(&b, &["--remote-read-only", "init"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(statuses(&v)["init"], "built");
    assert_eq!(v["remote"]["uploaded_records"], 0);
    assert_eq!(records(), before, "a read-only build sent a record");

    // `pull` brings builds without running anything; with the environment's url.
    let c = tiny_with("");
    let o = pai(&c, &["--json", "pull", "packed"], SECRET)
        .env("PAI_REMOTE", &url)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["traffic"]["downloaded_bytes"].as_u64().unwrap() > 0,
        "{v}"
    );
    // A node the remote does not hold fails the pull, naming it.
    let o = pai(&c, &["pull", "init"], SECRET)
        .env("PAI_REMOTE", &url)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not hold"), "{}", stderr(&o));

    // A remote that is not there: one warning, a local build.
    let d = tiny_with("\n[remote]\nurl = \"file:///nonexistent/pai-remote\"\n");
    let (v, code, err) = build_json(&d, &["packed"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.matches("warning: remote cache").count(), 1, "{err}");
    assert!(with_status(&statuses(&v), "remote").is_empty());
}

#[test]
fn credentials_in_the_pipeline_file_are_refused() {
    let p = tiny_with(
        "\n[remote]\nurl = \"s3://b/p\"\nsecret_access_key = \"abc\"\nendpont = \"http://x\"\n",
    );
    let o = run(&p, &["build", "packed"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("credentials never go in the pipeline file"),
        "{e}"
    );
    assert!(e.contains("AWS_SECRET_ACCESS_KEY"), "{e}");
    assert!(e.contains("did you mean `endpoint`"), "{e}");
    // No remote configured: push says how to name one.
    let q = tiny_with("");
    let o = run(&q, &["push"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("PAI_REMOTE"), "{}", stderr(&o));
}
