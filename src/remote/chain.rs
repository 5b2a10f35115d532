//! The remote half of the cache chain (the local store is the first half):
//! record lookups, downloads hashed before they enter the local store, and
//! uploads — objects first, the record last, put-if-absent — that run on a
//! thread of their own while the build goes on.
//!
//! A remote that fails (down, slow, a server error) is marked down after one
//! warning and not asked again in this run: the build goes on locally. A
//! remote that refuses the credentials is an error naming it (the engine
//! fails the node that asked), since that does not mend itself and a team
//! would otherwise retrain what the cache holds.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Result, bail};
use serde::Serialize;

use super::{Remote, RemoteError};
use crate::report::Ui;
use crate::steps::Retention;
use crate::store::{self, RecOutput, Record, Store};

/// Whether a build writes to the remote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    ReadWrite,
    /// Lookups and downloads only (`--remote-read-only`).
    ReadOnly,
}

/// What moved between the remote and this machine in one run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Traffic {
    pub downloaded_objects: u64,
    pub downloaded_bytes: u64,
    pub uploaded_objects: u64,
    pub uploaded_bytes: u64,
    pub uploaded_records: u64,
    /// Records another writer had put first (theirs stands).
    pub records_present: u64,
    /// Downloads refused because their BLAKE3 differed from their name.
    pub refused_objects: u64,
    pub upload_seconds: f64,
    /// Set when the remote stopped answering: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down: Option<String>,
    /// Warnings of the upload thread, shown at the end.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// An upload: a record and where its live objects are in the local store.
struct Job {
    rec: Record,
    objects: Vec<(String, u64, PathBuf)>,
}

pub struct Cache {
    remote: Arc<dyn Remote>,
    pub mode: Mode,
    traffic: Arc<Mutex<Traffic>>,
    /// Whether the one warning about a failing remote was shown.
    warned: Mutex<bool>,
    uploader: Mutex<Option<(Sender<Job>, JoinHandle<()>)>>,
    uploads_started: Mutex<Option<Instant>>,
    seq: AtomicU64,
}

/// Locks, ignoring poisoning (a panicked holder left plain counters).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Objects of a record a download brings: every live output, or (without
/// `temporaries`) every one but the temporaries, which only consumers that
/// read them need.
pub fn wanted(o: &RecOutput, temporaries: bool) -> bool {
    !o.collected && (temporaries || o.retention != Retention::Temporary)
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Cache {
    pub fn new(remote: Box<dyn Remote>, mode: Mode) -> Cache {
        Cache {
            remote: Arc::from(remote),
            mode,
            traffic: Arc::new(Mutex::new(Traffic::default())),
            warned: Mutex::new(false),
            uploader: Mutex::new(None),
            uploads_started: Mutex::new(None),
            seq: AtomicU64::new(0),
        }
    }

    pub fn url(&self) -> &str {
        self.remote.url()
    }

    pub fn remote(&self) -> &dyn Remote {
        &*self.remote
    }

    /// Whether the remote failed earlier in this run (it is not asked again).
    pub fn is_down(&self) -> bool {
        lock(&self.traffic).down.is_some()
    }

    pub fn traffic(&self) -> Traffic {
        lock(&self.traffic).clone()
    }

    /// A failed request: a refusal is an error naming the remote; anything
    /// else marks the remote down, with one warning, and is no error.
    fn failed(&self, e: RemoteError, ui: &Ui) -> Result<()> {
        match e {
            RemoteError::Denied(code) => Err(denied(self.url(), &code)),
            RemoteError::Unavailable(m) => {
                lock(&self.traffic).down.get_or_insert(m.clone());
                let mut w = lock(&self.warned);
                if !*w {
                    *w = true;
                    ui.message(&format!(
                        "warning: remote cache {} is unavailable ({m}); building locally",
                        self.url()
                    ));
                }
                Ok(())
            }
        }
    }

    /// The remote's record of `key`, if it has a readable one for that key.
    /// `Err` only when the remote refuses the credentials.
    pub fn lookup(&self, key: &str, ui: &Ui) -> Result<Option<Record>> {
        if self.is_down() {
            return Ok(None);
        }
        let bytes = match self.remote.get_record(key) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.failed(e, ui)?;
                return Ok(None);
            }
        };
        match serde_json::from_slice::<Record>(&bytes) {
            Ok(r) if r.key == key => Ok(Some(r)),
            _ => {
                ui.message(&format!(
                    "warning: remote cache {}: the record of key {} does not parse or names \
                     another key; ignored",
                    self.url(),
                    &key[..12.min(key.len())]
                ));
                Ok(None)
            }
        }
    }

    /// Brings the objects of `rec` that `want` selects into the local store
    /// (those already there are not downloaded), hashing each before it goes
    /// in. Returns the record as the local store now holds it (outputs
    /// neither local nor downloaded marked collected), or `None` when an
    /// object is missing or damaged (a miss: the caller builds locally).
    pub fn fetch(
        &self,
        store: &Store,
        node: &str,
        rec: &Record,
        want: &dyn Fn(&RecOutput) -> bool,
        ui: &Ui,
    ) -> Result<Option<Record>> {
        let mut out = rec.clone();
        // A bar in bytes (on a terminal) while the node's objects come down.
        let total: u64 = out
            .outputs
            .iter()
            .filter(|o| want(o) && !store.has_object(&o.hash, o.bytes))
            .map(|o| o.bytes)
            .sum();
        let bar = ui.node_progress(node);
        let mut done = 0u64;
        let result = self.fetch_into(store, node, &mut out, want, ui, &mut |b| {
            done += b;
            bar.set(done, total, "bytes");
        });
        bar.finish();
        Ok(result?.then(|| {
            out.node = node.to_string();
            out
        }))
    }

    /// [`Cache::fetch`]'s loop: `Ok(false)` on a miss.
    fn fetch_into(
        &self,
        store: &Store,
        node: &str,
        out: &mut Record,
        want: &dyn Fn(&RecOutput) -> bool,
        ui: &Ui,
        progress: &mut dyn FnMut(u64),
    ) -> Result<bool> {
        for o in out.outputs.iter_mut() {
            if store.has_object(&o.hash, o.bytes) {
                o.collected = false;
                continue;
            }
            if !want(o) {
                o.collected = true;
                continue;
            }
            if !super::is_hex64(&o.hash) {
                ui.message(&format!(
                    "warning: remote record of `{node}` names an object `{}` that is not a hash; \
                     building locally",
                    o.name
                ));
                return Ok(false);
            }
            if self.is_down() {
                return Ok(false);
            }
            match self.download(store, &o.hash, o.bytes) {
                Ok(Got::Stored) => {
                    let mut t = lock(&self.traffic);
                    t.downloaded_objects += 1;
                    t.downloaded_bytes += o.bytes;
                    drop(t);
                    progress(o.bytes);
                    o.collected = false;
                }
                Ok(Got::Missing) => {
                    if ui.verbose {
                        ui.message(&format!(
                            "      remote cache has no object {} (`{}` of `{node}`): a miss",
                            &o.hash[..12],
                            o.name
                        ));
                    }
                    return Ok(false);
                }
                Ok(Got::Corrupt(actual, n)) => {
                    lock(&self.traffic).refused_objects += 1;
                    ui.message(&format!(
                        "warning: remote cache {}: object {} (`{}` of `{node}`) is damaged \
                         ({n} bytes hashing to {}); refused, building `{node}` locally",
                        self.url(),
                        &o.hash[..12],
                        o.name,
                        &actual[..12]
                    ));
                    return Ok(false);
                }
                Err(Fail::Remote(e)) => {
                    self.failed(e, ui)?;
                    return Ok(false);
                }
                Err(Fail::Local(e)) => return Err(e),
            }
        }
        Ok(true)
    }

    /// One object into the local store, verified.
    fn download(&self, store: &Store, hash: &str, bytes: u64) -> Result<Got, Fail> {
        let dir = store.tmp_root();
        store::create_dirs(&dir, false).map_err(Fail::Local)?;
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("remote-{}-{}-{n}", &hash[..12], std::process::id()));
        let file = std::fs::File::create(&tmp)
            .map_err(|e| Fail::Local(anyhow::anyhow!("creating {}: {e}", tmp.display())))?;
        let mut w = Hashing {
            inner: std::io::BufWriter::new(file),
            hasher: blake3::Hasher::new(),
            bytes: 0,
        };
        let r = self.remote.get_object(hash, &mut w);
        let flushed = w.flush();
        let actual = w.hasher.finalize().to_hex().to_string();
        let got = w.bytes;
        drop(w);
        let result = match r {
            Ok(false) => Ok(Got::Missing),
            Err(e) => Err(Fail::Remote(e)),
            Ok(true) if flushed.is_err() => Err(Fail::Local(anyhow::anyhow!(
                "writing {}: {:?}",
                tmp.display(),
                flushed.err()
            ))),
            Ok(true) if actual != hash || got != bytes => Ok(Got::Corrupt(actual, got)),
            // Hashed as it came in: placed without reading it again.
            Ok(true) => match store.put_hashed(&tmp, hash, bytes) {
                Ok(()) => Ok(Got::Stored),
                Err(e) => Err(Fail::Local(e)),
            },
        };
        store::remove_entry(&tmp).ok();
        result
    }

    /// Queues a build just committed locally for upload (objects, then its
    /// record), on the upload thread. Nothing in read-only mode or once the
    /// remote is down.
    pub fn upload_later(&self, store: &Store, rec: &Record) {
        if self.mode == Mode::ReadOnly || self.is_down() {
            return;
        }
        let job = Job {
            rec: rec.clone(),
            objects: rec
                .live_outputs()
                .map(|o| (o.hash.clone(), o.bytes, store.object_path(&o.hash)))
                .collect(),
        };
        let mut up = lock(&self.uploader);
        if up.is_none() {
            let (tx, rx) = channel::<Job>();
            let remote = self.remote.clone();
            let traffic = self.traffic.clone();
            let handle = std::thread::spawn(move || {
                for job in rx {
                    if lock(&traffic).down.is_some() {
                        continue;
                    }
                    match upload(&*remote, &job.rec, &job.objects, &traffic, &|_| {}) {
                        Ok(_) => {}
                        Err(RemoteError::Denied(code)) => {
                            let mut t = lock(&traffic);
                            t.warnings.push(format!(
                                "warning: remote cache {} refused an upload ({code}); \
                                 nothing more is uploaded in this run (credentials that may \
                                 only read want --remote-read-only)",
                                remote.url()
                            ));
                            t.down = Some(format!("upload refused: {code}"));
                        }
                        Err(RemoteError::Unavailable(m)) => {
                            lock(&traffic).down.get_or_insert(m);
                        }
                    }
                }
            });
            *lock(&self.uploads_started) = Some(Instant::now());
            *up = Some((tx, handle));
        }
        if let Some((tx, _)) = up.as_ref() {
            tx.send(job).ok();
        }
    }

    /// Waits for the queued uploads; returns what moved in this run, and
    /// shows the upload thread's warnings and one line of summary.
    pub fn finish(&self, ui: &Ui) -> Traffic {
        let up = lock(&self.uploader).take();
        if let Some((tx, handle)) = up {
            drop(tx);
            handle.join().ok();
        }
        if let Some(t0) = *lock(&self.uploads_started) {
            lock(&self.traffic).upload_seconds = t0.elapsed().as_secs_f64();
        }
        let mut t = lock(&self.traffic);
        let warnings = std::mem::take(&mut t.warnings);
        let was_warned = *lock(&self.warned);
        for w in &warnings {
            ui.message(w);
        }
        if warnings.is_empty()
            && !was_warned
            && let Some(d) = &t.down
        {
            ui.message(&format!(
                "warning: remote cache {} is unavailable ({d}); what was built here was not \
                 uploaded (`pai push` sends it later)",
                self.url()
            ));
        }
        if let Some(s) = summary(&t, self.url()) {
            ui.message(&s);
        }
        t.clone()
    }
}

/// One line on what moved, or `None` if nothing did.
pub fn summary(t: &Traffic, url: &str) -> Option<String> {
    let mut parts = Vec::new();
    if t.downloaded_objects > 0 {
        parts.push(format!(
            "{} objects ({}) downloaded",
            t.downloaded_objects,
            crate::report::size(t.downloaded_bytes)
        ));
    }
    if t.uploaded_objects > 0 || t.uploaded_records > 0 {
        parts.push(format!(
            "{} objects ({}) and {} records uploaded in {}",
            t.uploaded_objects,
            crate::report::size(t.uploaded_bytes),
            t.uploaded_records,
            crate::report::duration(t.upload_seconds)
        ));
    }
    if t.refused_objects > 0 {
        parts.push(format!("{} damaged objects refused", t.refused_objects));
    }
    (!parts.is_empty()).then(|| format!("remote {url}: {}", parts.join(", ")))
}

enum Got {
    Stored,
    Missing,
    Corrupt(String, u64),
}

enum Fail {
    Remote(RemoteError),
    Local(anyhow::Error),
}

/// The error of a remote that refuses the credentials.
pub fn denied(url: &str, code: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "remote cache {url} refused the credentials ({code}): check AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY (and that they may use this bucket), or build without the \
         remote with --no-remote"
    )
}

/// What [`upload`] did with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Uploaded {
    /// Objects and record sent.
    Written,
    /// The remote had the record already (another writer, or an earlier push).
    Present,
    /// An output is neither here nor on the remote (collected by `gc
    /// --temporaries` before it was pushed): the record is not sent.
    Incomplete,
}

/// Uploads a build: each object the remote lacks (checked by size), then the
/// record with put-if-absent, so a reader never finds a record whose objects
/// are not all there. `objects`: (hash, bytes, local path) of the outputs
/// present locally; outputs collected here must be on the remote already.
/// `progress` is told the bytes of each object sent.
pub fn upload(
    remote: &dyn Remote,
    rec: &Record,
    objects: &[(String, u64, PathBuf)],
    traffic: &Mutex<Traffic>,
    progress: &dyn Fn(u64),
) -> Result<Uploaded, RemoteError> {
    if remote.get_record(&rec.key)?.is_some() {
        lock(traffic).records_present += 1;
        return Ok(Uploaded::Present);
    }
    for o in rec.outputs.iter() {
        let here = objects.iter().find(|(h, _, _)| *h == o.hash);
        let there = remote.head_object(&o.hash)?;
        if there == Some(o.bytes) {
            progress(o.bytes);
            continue;
        }
        let Some((_, bytes, path)) = here else {
            return Ok(Uploaded::Incomplete);
        };
        remote.put_object(&o.hash, path)?;
        progress(*bytes);
        let mut t = lock(traffic);
        t.uploaded_objects += 1;
        t.uploaded_bytes += bytes;
    }
    // The record as its builder wrote it: every output live.
    let mut clean = rec.clone();
    for o in clean.outputs.iter_mut() {
        o.collected = false;
    }
    let bytes = serde_json::to_vec_pretty(&clean)
        .map_err(|e| RemoteError::Unavailable(format!("encoding the record: {e}")))?;
    if remote.put_record_if_absent(&rec.key, &bytes)? {
        lock(traffic).uploaded_records += 1;
        Ok(Uploaded::Written)
    } else {
        lock(traffic).records_present += 1;
        Ok(Uploaded::Present)
    }
}

impl Cache {
    /// [`upload`] now, on this thread (`pai push`).
    pub fn upload_now(
        &self,
        store: &Store,
        rec: &Record,
        progress: &dyn Fn(u64),
    ) -> Result<Uploaded> {
        let objects: Vec<(String, u64, PathBuf)> = rec
            .live_outputs()
            .filter(|o| store.has_object(&o.hash, o.bytes))
            .map(|o| (o.hash.clone(), o.bytes, store.object_path(&o.hash)))
            .collect();
        match upload(&*self.remote, rec, &objects, &self.traffic, progress) {
            Ok(u) => Ok(u),
            Err(RemoteError::Denied(code)) => Err(denied(self.url(), &code)),
            Err(RemoteError::Unavailable(m)) => {
                bail!("remote cache {} is unavailable: {m}", self.url())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::folder::Folder;
    use std::fs;

    fn quiet() -> Ui {
        Ui::new(true, false)
    }

    fn key(s: &str) -> String {
        blake3::hash(s.as_bytes()).to_hex().to_string()
    }

    /// A store holding `files` as the outputs of one build, and its record.
    fn built(dir: &std::path::Path, files: &[(&str, &[u8], Retention)]) -> (Store, Record) {
        let store = Store::new(dir.join("cache"), store::MAIN_VIEW);
        let tmp = dir.join("out");
        fs::create_dir_all(&tmp).unwrap();
        let mut outputs = Vec::new();
        for (name, bytes, retention) in files {
            let p = tmp.join(name);
            fs::write(&p, bytes).unwrap();
            let (hash, bytes) = store.put_file(&p).unwrap();
            outputs.push(RecOutput {
                name: name.to_string(),
                hash,
                bytes,
                retention: *retention,
                collected: false,
            });
        }
        let rec = Record {
            key: key(&format!("{files:?}")),
            node: "n".into(),
            kind: "command".into(),
            kind_version: 1,
            engine: 1,
            params: Default::default(),
            inputs: Vec::new(),
            shaders: Vec::new(),
            content: String::new(),
            outputs,
            files: Vec::new(),
            seconds: 1.0,
            built_at: 1,
            built_at_nanos: 0,
            ran_on: None,
            summary: None,
        };
        store.write_record(&rec).unwrap();
        (store, rec)
    }

    fn folder(dir: &std::path::Path) -> Cache {
        let root = dir.join("remote");
        fs::create_dir_all(&root).unwrap();
        Cache::new(
            Box::new(Folder::new(&root, &format!("file://{}", root.display()))),
            Mode::ReadWrite,
        )
    }

    const FILES: &[(&str, &[u8], Retention)] = &[
        ("model.bin", b"weights weights weights", Retention::Keep),
        ("ckpt.bin", b"optimizer state", Retention::Temporary),
        ("log.jsonl", b"{\"step\":1}\n", Retention::Log),
    ];

    #[test]
    fn a_pushed_build_is_a_hit_elsewhere_and_temporaries_stay_behind() {
        let d = tempfile::tempdir().unwrap();
        let (a, rec) = built(&d.path().join("a"), FILES);
        let cache = folder(d.path());
        assert_eq!(
            cache.upload_now(&a, &rec, &|_| {}).unwrap(),
            Uploaded::Written
        );
        assert_eq!(cache.traffic().uploaded_objects, 3);
        // Pushing again finds it there.
        assert_eq!(
            cache.upload_now(&a, &rec, &|_| {}).unwrap(),
            Uploaded::Present
        );

        let b = Store::new(d.path().join("b/cache"), store::MAIN_VIEW);
        let found = cache.lookup(&rec.key, &quiet()).unwrap().expect("a hit");
        let got = cache
            .fetch(&b, "m", &found, &|o| wanted(o, false), &quiet())
            .unwrap()
            .expect("downloaded");
        assert_eq!(got.node, "m");
        for o in &got.outputs {
            let temp = o.retention == Retention::Temporary;
            assert_eq!(o.collected, temp, "{}", o.name);
            assert_eq!(b.has_object(&o.hash, o.bytes), !temp, "{}", o.name);
        }
        assert!(b.complete(&got));
        assert_eq!(cache.traffic().downloaded_objects, 2);
        // A consumer that reads temporaries brings them too.
        let all = cache
            .fetch(&b, "m", &found, &|o| wanted(o, true), &quiet())
            .unwrap()
            .unwrap();
        assert!(all.outputs.iter().all(|o| !o.collected));
        assert_eq!(cache.traffic().downloaded_objects, 3);
    }

    #[test]
    fn an_unknown_key_is_a_miss() {
        let d = tempfile::tempdir().unwrap();
        let cache = folder(d.path());
        assert!(cache.lookup(&key("nothing"), &quiet()).unwrap().is_none());
        assert!(!cache.is_down());
    }

    #[test]
    fn a_damaged_object_is_refused_and_never_enters_the_store() {
        let d = tempfile::tempdir().unwrap();
        let (a, rec) = built(&d.path().join("a"), FILES);
        let cache = folder(d.path());
        cache.upload_now(&a, &rec, &|_| {}).unwrap();
        let model = &rec.outputs[0];
        let obj = d.path().join("remote/cas").join(&model.hash);
        fs::write(&obj, b"weights weights weightz").unwrap();
        let b = Store::new(d.path().join("b/cache"), store::MAIN_VIEW);
        let found = cache.lookup(&rec.key, &quiet()).unwrap().unwrap();
        let got = cache
            .fetch(&b, "m", &found, &|o| wanted(o, false), &quiet())
            .unwrap();
        assert!(got.is_none());
        assert_eq!(cache.traffic().refused_objects, 1);
        assert!(!b.has_object(&model.hash, model.bytes));
        let wrong = blake3::hash(b"weights weights weightz")
            .to_hex()
            .to_string();
        assert!(!b.object_path(&wrong).exists());
        // Nothing left half-written in the store's tmp folder either.
        assert_eq!(fs::read_dir(b.tmp_root()).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_object_is_a_miss() {
        let d = tempfile::tempdir().unwrap();
        let (a, rec) = built(&d.path().join("a"), FILES);
        let cache = folder(d.path());
        cache.upload_now(&a, &rec, &|_| {}).unwrap();
        fs::remove_file(d.path().join("remote/cas").join(&rec.outputs[0].hash)).unwrap();
        let b = Store::new(d.path().join("b/cache"), store::MAIN_VIEW);
        let found = cache.lookup(&rec.key, &quiet()).unwrap().unwrap();
        let got = cache.fetch(&b, "m", &found, &|o| wanted(o, false), &quiet());
        assert!(got.unwrap().is_none());
        assert!(!cache.is_down());
    }

    /// A folder remote whose uploads fail after `ok` objects.
    struct Flaky {
        inner: Folder,
        ok: Mutex<usize>,
    }

    impl Remote for Flaky {
        fn url(&self) -> &str {
            self.inner.url()
        }
        fn get_object(&self, h: &str, w: &mut dyn Write) -> crate::remote::RResult<bool> {
            self.inner.get_object(h, w)
        }
        fn head_object(&self, h: &str) -> crate::remote::RResult<Option<u64>> {
            self.inner.head_object(h)
        }
        fn put_object(&self, h: &str, p: &std::path::Path) -> crate::remote::RResult<()> {
            let mut ok = lock(&self.ok);
            if *ok == 0 {
                return Err(RemoteError::Unavailable("connection reset".into()));
            }
            *ok -= 1;
            self.inner.put_object(h, p)
        }
        fn get_record(&self, k: &str) -> crate::remote::RResult<Option<Vec<u8>>> {
            self.inner.get_record(k)
        }
        fn put_record_if_absent(&self, k: &str, b: &[u8]) -> crate::remote::RResult<bool> {
            self.inner.put_record_if_absent(k, b)
        }
    }

    #[test]
    fn a_partial_upload_is_invisible_and_the_next_one_completes_it() {
        let d = tempfile::tempdir().unwrap();
        let (a, rec) = built(&d.path().join("a"), FILES);
        let root = d.path().join("remote");
        fs::create_dir_all(&root).unwrap();
        let flaky = Cache::new(
            Box::new(Flaky {
                inner: Folder::new(&root, "file:///remote"),
                ok: Mutex::new(1),
            }),
            Mode::ReadWrite,
        );
        assert!(flaky.upload_now(&a, &rec, &|_| {}).is_err());
        // One object went up, the record did not: readers see a miss.
        assert!(flaky.lookup(&rec.key, &quiet()).unwrap().is_none());
        assert_eq!(fs::read_dir(root.join("cas")).unwrap().count(), 1);
        // In the background (write-through), the same failure marks the remote
        // down and the build goes on.
        flaky.upload_later(&a, &rec);
        let t = flaky.finish(&quiet());
        assert!(t.down.is_some());
        assert!(flaky.lookup(&rec.key, &quiet()).unwrap().is_none());
        let good = folder(d.path());
        assert_eq!(
            good.upload_now(&a, &rec, &|_| {}).unwrap(),
            Uploaded::Written
        );
        // Only what was missing went up the second time.
        assert_eq!(good.traffic().uploaded_objects, 2);
        assert!(good.lookup(&rec.key, &quiet()).unwrap().is_some());
    }

    #[test]
    fn racing_writers_of_one_key_leave_one_whole_record() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("remote");
        fs::create_dir_all(&root).unwrap();
        let remote = Folder::new(&root, "file:///remote");
        let k = key("race");
        let bodies: Vec<Vec<u8>> = (0..8).map(|i| vec![b'a' + i as u8; 10_000]).collect();
        let wins: Vec<bool> = std::thread::scope(|s| {
            let hs: Vec<_> = bodies
                .iter()
                .map(|b| s.spawn(|| remote.put_record_if_absent(&k, b).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
        let winner = wins.iter().position(|w| *w).unwrap();
        assert_eq!(remote.get_record(&k).unwrap().unwrap(), bodies[winner]);
    }

    #[test]
    fn a_remote_that_is_not_there_is_down_once_and_then_not_asked() {
        let d = tempfile::tempdir().unwrap();
        let gone = d.path().join("unmounted");
        let cache = Cache::new(
            Box::new(Folder::new(&gone, "file:///unmounted")),
            Mode::ReadWrite,
        );
        assert!(cache.lookup(&key("x"), &quiet()).unwrap().is_none());
        assert!(cache.is_down());
        assert!(cache.lookup(&key("y"), &quiet()).unwrap().is_none());
    }

    #[test]
    fn read_only_uploads_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (a, rec) = built(&d.path().join("a"), FILES);
        let root = d.path().join("remote");
        fs::create_dir_all(&root).unwrap();
        let ro = Cache::new(
            Box::new(Folder::new(&root, "file:///remote")),
            Mode::ReadOnly,
        );
        ro.upload_later(&a, &rec);
        let t = ro.finish(&quiet());
        assert_eq!(t.uploaded_objects + t.uploaded_records, 0);
        assert!(!root.join("ac").exists());
    }

    #[test]
    fn profile_files_give_credentials_and_debug_hides_them() {
        let text = "[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s3cr3t\n\
                    [profile team]\naws_access_key_id=AKIA2\naws_secret_access_key=other\n";
        let c = crate::remote::profile_credentials(text, "default").unwrap();
        assert_eq!((c.key_id.as_str(), c.secret.as_str()), ("AKIA1", "s3cr3t"));
        assert_eq!(
            crate::remote::profile_credentials(text, "team")
                .unwrap()
                .key_id,
            "AKIA2"
        );
        assert!(crate::remote::profile_credentials(text, "none").is_none());
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
