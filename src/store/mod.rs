//! The content-addressed store under `cache/`:
//!
//! - `objects/ab/cdef…` every output file, named by the BLAKE3 of its bytes, read-only;
//! - `records/<key>.json` one per node build;
//! - `refs/<node>` the key of each node's current build (the GC roots);
//! - `out/<node>/<output>` hard links to the current build's objects;
//! - `stat/` the stat cache of source trees; `tmp/` where nodes run; `lock`;
//! - `work/<key>/` a running node's resumable state (see [`work`]).
//!
//! Pipelines other than the project's `Pipeline.toml` get their own refs and
//! out folders under `views/<name>/` and share objects and records.
//! Every write is atomic (temporary file + rename), and a build commits in the
//! order tmp → objects → record → ref, so a crash at any point leaves a valid store.
//! Each step is synced to the disk (the file, then its folder entry) before
//! the next begins, so a power cut cannot leave a record whose objects, or a
//! ref whose record, never reached the disk (see [`durable`]).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::steps::Retention;

pub mod gc;
pub mod lock;
pub mod statcache;
pub mod verify;
pub mod work;

pub const MAIN_VIEW: &str = "main";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RecInput {
    pub role: String,
    pub node: String,
    pub hash: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RecShader {
    pub name: String,
    pub hash: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RecOutput {
    pub name: String,
    pub hash: String,
    pub bytes: u64,
    pub retention: Retention,
    /// Deleted by `gc --temporaries`; still part of the node's content hash.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub collected: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RecFile {
    pub path: String,
    pub hash: String,
    pub bytes: u64,
}

/// Where a GPU node ran: what decides the bits but is not in the key (a model
/// trained on one adapter stays fresh on another; the record says where).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RanOn {
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    /// The kernels the node dispatched: the variants chosen for this adapter.
    pub kernels: Vec<String>,
}

/// One node build: everything that went into its key, and what came out.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Record {
    pub key: String,
    pub node: String,
    pub kind: String,
    pub kind_version: u32,
    pub engine: u32,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub inputs: Vec<RecInput>,
    pub shaders: Vec<RecShader>,
    pub outputs: Vec<RecOutput>,
    /// What dependents key on: the hash of (name, hash) of every output, or of
    /// the file listing for a source.
    pub content: String,
    /// A source's listing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<RecFile>,
    pub seconds: f64,
    /// When it was built: seconds since the epoch, and the nanoseconds
    /// within that second (so builds in one second still order, `gc --keep`).
    pub built_at: u64,
    #[serde(default)]
    pub built_at_nanos: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ran_on: Option<RanOn>,
    /// The step's one-line summary of what it made (e.g. training's final
    /// validation loss against its baseline), shown beside its build line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

impl Record {
    pub fn live_outputs(&self) -> impl Iterator<Item = &RecOutput> {
        self.outputs.iter().filter(|o| !o.collected)
    }
}

pub struct Store {
    pub root: PathBuf,
    pub view: String,
}

static DURABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether store writes are synced to the disk (always, but for `pai bench
/// engine`, which turns it off to measure what syncing costs).
pub fn durable() -> bool {
    DURABLE.load(std::sync::atomic::Ordering::Relaxed)
}

/// For benchmarks only: a store that does not sync survives a crash of pai
/// but not a power cut.
pub fn set_durable(on: bool) {
    DURABLE.store(on, std::sync::atomic::Ordering::Relaxed)
}

/// Flushes a folder's entries (a rename into it, a new file) to the disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    if durable() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {} to the disk", dir.display()))?;
    }
    Ok(())
}

/// Flushes a file's bytes to the disk.
pub fn sync_file(path: &Path) -> Result<()> {
    if durable() {
        fs::File::open(path)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {} to the disk", path.display()))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically and durably: a crash or a power cut
/// leaves the old file or the new one, and once it returns the new one is on
/// the disk.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_to(path, bytes, durable())
}

/// [`write_atomic`] without the syncs, for files whose loss costs nothing
/// but time (the stat cache, the lock's owner note).
pub fn write_atomic_volatile(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_to(path, bytes, false)
}

/// `create_dir_all`, and when `sync`, each new folder's entry flushed to the
/// disk (its parent synced), so what is renamed into it later is reachable.
pub fn create_dirs(dir: &Path, sync: bool) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(p) = parent {
        create_dirs(p, sync)?;
    }
    match fs::create_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(e).with_context(|| format!("creating {}", dir.display()));
        }
        _ => {}
    }
    if sync && let Some(p) = parent {
        sync_dir(p)?;
    }
    Ok(())
}

fn write_atomic_to(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let dir = path.parent().context("path has no parent")?;
    create_dirs(dir, sync)?;
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().and_then(|s| s.to_str()).unwrap_or("f"),
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.display()))?;
    if sync {
        f.sync_all()
            .with_context(|| format!("syncing {} to the disk", tmp.display()))?;
    }
    drop(f);
    fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    if sync {
        sync_dir(dir)?;
    }
    Ok(())
}

/// BLAKE3 of a file, parallel for large files. Reads, never maps: a file
/// truncated while it is hashed is an error, not a SIGBUS.
pub fn hash_file(path: &Path) -> Result<(String, u64)> {
    use std::io::Read;
    let mut f = fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let len = f
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let mut h = blake3::Hasher::new();
    let parallel = len >= 4 << 20;
    let mut buf = vec![0u8; if parallel { 8 << 20 } else { 256 << 10 }.min(len as usize + 1)];
    let mut total = 0u64;
    loop {
        // Fill the buffer (a short read is not the end).
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            }
        }
        if n == 0 {
            break;
        }
        if parallel {
            h.update_rayon(&buf[..n]);
        } else {
            h.update(&buf[..n]);
        }
        total += n as u64;
        if n < buf.len() {
            break;
        }
    }
    Ok((h.finalize().to_hex().to_string(), total))
}

/// BLAKE3 of (name, hash) pairs in order: a node's content, a source's listing.
pub fn pairs_hash<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut h = blake3::Hasher::new();
    for (name, hash) in pairs {
        h.update(name.as_bytes());
        h.update(b"\0");
        h.update(hash.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}

pub fn now_secs() -> u64 {
    now().0
}

/// Now, as (seconds since the epoch, nanoseconds within the second).
pub fn now() -> (u64, u32) {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_secs(), d.subsec_nanos()))
        .unwrap_or((0, 0))
}

impl Store {
    /// The store of a project folder; `view` names the pipeline file's refs.
    pub fn new(root: PathBuf, view: &str) -> Store {
        Store {
            root,
            view: view.to_string(),
        }
    }

    fn view_dir(&self) -> PathBuf {
        if self.view == MAIN_VIEW {
            self.root.clone()
        } else {
            self.root.join("views").join(&self.view)
        }
    }

    pub fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }
    pub fn records_dir(&self) -> PathBuf {
        self.root.join("records")
    }
    pub fn tmp_root(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub fn refs_dir(&self) -> PathBuf {
        self.view_dir().join("refs")
    }
    pub fn out_root(&self) -> PathBuf {
        self.view_dir().join("out")
    }
    pub fn out_dir(&self, node: &str) -> PathBuf {
        self.out_root().join(node)
    }

    /// Remembers which pipeline file a view belongs to, so `gc` can drop the
    /// refs of nodes that file no longer declares. Read only for files outside
    /// the project (`engine::view_file`): an in-project view's name spells its
    /// file relative to the project, which stays right when it is copied.
    pub fn note_pipeline_file(&self, file: &Path) -> Result<()> {
        if self.view == MAIN_VIEW {
            return Ok(());
        }
        let note = self.view_dir().join("pipeline");
        let text = format!("{}\n", file.display());
        if fs::read_to_string(&note).ok().as_deref() != Some(text.as_str()) {
            write_atomic(&note, text.as_bytes())?;
        }
        Ok(())
    }

    /// The pipeline file of this view, if known (`None`: the project's own).
    pub fn pipeline_file(&self) -> Option<PathBuf> {
        let s = fs::read_to_string(self.view_dir().join("pipeline")).ok()?;
        Some(PathBuf::from(s.trim_end_matches('\n')))
    }

    pub fn object_path(&self, hash: &str) -> PathBuf {
        self.objects_dir().join(&hash[..2]).join(&hash[2..])
    }

    /// Whether the object is present with the expected size (a cheap check;
    /// `verify` and input reads check the content).
    pub fn has_object(&self, hash: &str, bytes: u64) -> bool {
        fs::metadata(self.object_path(hash))
            .map(|m| m.len() == bytes)
            .unwrap_or(false)
    }

    /// Moves a finished file into the store under its hash and makes it
    /// read-only. An object already there is kept only if its bytes hash to
    /// its name; a damaged one is replaced. Objects are pai's own inodes: a
    /// file with other links (a command hard-linked a user's file into
    /// `$PAI_OUT`) is copied, never renamed, so the user's file is untouched.
    /// Anything but a regular file (a symbolic link, a FIFO) is refused.
    pub fn put_file(&self, src: &Path) -> Result<(String, u64)> {
        use std::os::unix::fs::MetadataExt;
        let meta =
            fs::symlink_metadata(src).with_context(|| format!("reading {}", src.display()))?;
        if !meta.file_type().is_file() {
            bail!(
                "{} is not a regular file ({}); a node's outputs must be files it wrote",
                src.display(),
                file_kind(&meta)
            );
        }
        // A private copy of a shared inode: hash and store what pai owns.
        let owned;
        let src = if meta.nlink() > 1 {
            let copy = src.with_file_name(format!(
                ".{}.pai-copy",
                src.file_name().and_then(|s| s.to_str()).unwrap_or("f")
            ));
            fs::copy(src, &copy).with_context(|| format!("copying {}", src.display()))?;
            fs::remove_file(src).with_context(|| format!("removing {}", src.display()))?;
            owned = copy;
            owned.as_path()
        } else {
            src
        };
        let (hash, bytes) = hash_file(src)?;
        self.put_hashed(src, &hash, bytes)?;
        Ok((hash, bytes))
    }

    /// Moves a file pai wrote itself, whose BLAKE3 (`hash`) and size are
    /// known, into the store: [`put_file`](Self::put_file) without hashing it
    /// again (a download hashed as it came in).
    pub fn put_hashed(&self, src: &Path, hash: &str, bytes: u64) -> Result<()> {
        let dst = self.object_path(hash);
        if let Ok(existing) = fs::symlink_metadata(&dst) {
            let intact = existing.file_type().is_file()
                && hash_file(&dst).is_ok_and(|(h, n)| h == hash && n == bytes);
            if intact {
                fs::remove_file(src).ok();
                // Adopted by a new build: young again, so gc's grace period
                // covers it until the record that names it is written.
                fs::File::open(&dst)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()))
                    .ok();
                return Ok(());
            }
            // Damaged (or not a file): replaced by the bytes just written.
            make_writable(&dst);
            if existing.is_dir() {
                fs::remove_dir_all(&dst)
            } else {
                fs::remove_file(&dst)
            }
            .with_context(|| format!("removing the damaged object {}", dst.display()))?;
        }
        let shard = dst.parent().context("object path")?;
        create_dirs(shard, durable())?;
        let mut perm = fs::metadata(src)?.permissions();
        perm.set_readonly(true);
        fs::set_permissions(src, perm)?;
        // The bytes reach the disk before the name does, and the name before
        // any record that points at it.
        sync_file(src)?;
        fs::rename(src, &dst)
            .with_context(|| format!("moving {} into the store", src.display()))?;
        sync_dir(shard)?;
        Ok(())
    }

    pub fn record_path(&self, key: &str) -> PathBuf {
        self.records_dir().join(format!("{key}.json"))
    }

    /// The record of a build, if there is a readable one.
    pub fn record(&self, key: &str) -> Option<Record> {
        let bytes = fs::read(self.record_path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn write_record(&self, rec: &Record) -> Result<()> {
        write_atomic(
            &self.record_path(&rec.key),
            &serde_json::to_vec_pretty(rec)?,
        )
    }

    pub fn read_ref(&self, node: &str) -> Option<String> {
        let s = fs::read_to_string(self.refs_dir().join(node)).ok()?;
        let s = s.trim();
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_string())
    }

    /// Node names with a ref in this view, sorted (half-written `.tmp` refs
    /// of killed runs left out).
    pub fn ref_names(&self) -> Vec<String> {
        let mut names: Vec<String> = match fs::read_dir(self.refs_dir()) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| !n.starts_with('.'))
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    /// Makes a build whose objects are in the store the node's current one,
    /// in the commit order: record, then ref, then `out/`.
    pub fn publish(&self, node: &str, rec: &Record) -> Result<()> {
        self.write_record(rec)?;
        self.write_ref(node, &rec.key)?;
        self.link_out(node, rec)
    }

    pub fn write_ref(&self, node: &str, key: &str) -> Result<()> {
        write_atomic(&self.refs_dir().join(node), format!("{key}\n").as_bytes())
    }

    /// A record's live outputs are all in the store.
    pub fn complete(&self, rec: &Record) -> bool {
        rec.live_outputs()
            .all(|o| self.has_object(&o.hash, o.bytes))
    }

    /// Whether `out/<node>/` shows this build.
    pub fn out_current(&self, node: &str, rec: &Record) -> bool {
        let dir = self.out_dir(node);
        fs::read_to_string(dir.join(".key"))
            .map(|k| k.trim() == rec.key)
            .unwrap_or(false)
            && rec.live_outputs().all(|o| {
                // The very object, not a file a user edited or replaced.
                use std::os::unix::fs::MetadataExt;
                match (
                    fs::metadata(dir.join(&o.name)),
                    fs::metadata(self.object_path(&o.hash)),
                ) {
                    (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                    _ => false,
                }
            })
            && rec
                .outputs
                .iter()
                .filter(|o| o.collected)
                .all(|o| !dir.join(&o.name).exists())
    }

    /// Points `out/<node>/` at a build's objects (hard links; a copy where
    /// the file system has none). Built aside, then swapped in.
    pub fn link_out(&self, node: &str, rec: &Record) -> Result<()> {
        let root = self.out_root();
        fs::create_dir_all(&root)?;
        let staging = root.join(format!(".{node}.{}.new", std::process::id()));
        remove_entry(&staging).with_context(|| format!("removing {}", staging.display()))?;
        fs::create_dir_all(&staging)?;
        for o in rec.live_outputs() {
            let dst = staging.join(&o.name);
            if let Some(parent) = dst.parent() {
                fs::create_dir_all(parent)?;
            }
            let src = self.object_path(&o.hash);
            if fs::hard_link(&src, &dst).is_err() {
                fs::copy(&src, &dst).with_context(|| format!("linking {}", dst.display()))?;
            }
        }
        fs::write(staging.join(".key"), format!("{}\n", rec.key))?;
        let dst = self.out_dir(node);
        remove_entry(&dst).with_context(|| format!("replacing {}", dst.display()))?;
        fs::rename(&staging, &dst)?;
        Ok(())
    }

    /// Removes what interrupted runs left behind. Call with the lock held.
    pub fn clean_tmp(&self) -> Result<u64> {
        let mut freed = 0;
        let tmp = self.tmp_root();
        if let Ok(rd) = fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let p = e.path();
                let bytes = dir_size(&p);
                if let Err(err) = remove_entry(&p) {
                    // A process that left a killed command's group may still
                    // write there: left for a later build or gc.
                    if crate::steps::command::is_run_folder(&p) {
                        continue;
                    }
                    return Err(err).with_context(|| format!("removing {}", p.display()));
                }
                // Only what went counts as freed.
                freed += bytes;
            }
        }
        // Half-written refs and out/ staging folders of killed runs, in every view.
        for view in gc::views(self) {
            for dir in [view.out_root(), view.refs_dir()] {
                if let Ok(rd) = fs::read_dir(&dir) {
                    for e in rd.flatten() {
                        let name = e.file_name().to_string_lossy().to_string();
                        if name.starts_with('.') && name.ends_with(".new") {
                            remove_entry(&e.path()).ok();
                        } else if name.starts_with('.') && name.ends_with(".tmp") {
                            fs::remove_file(e.path()).ok();
                        }
                    }
                }
            }
        }
        Ok(freed)
    }

    pub fn all_records(&self) -> Vec<(PathBuf, Option<Record>)> {
        let mut v = Vec::new();
        if let Ok(rd) = fs::read_dir(self.records_dir()) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "json") {
                    let rec = fs::read(&p)
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok());
                    v.push((p, rec));
                }
            }
        }
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Every object as (hash, path).
    pub fn all_objects(&self) -> Vec<(String, PathBuf)> {
        let mut v = Vec::new();
        if let Ok(rd) = fs::read_dir(self.objects_dir()) {
            for sub in rd.flatten() {
                let prefix = sub.file_name().to_string_lossy().to_string();
                if let Ok(rd2) = fs::read_dir(sub.path()) {
                    for e in rd2.flatten() {
                        v.push((
                            format!("{prefix}{}", e.file_name().to_string_lossy()),
                            e.path(),
                        ));
                    }
                }
            }
        }
        v.sort();
        v
    }
}

/// What a file system entry is, in words.
pub fn file_kind(m: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a folder"
    } else if t.is_file() {
        "a file"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a device or other special file"
    }
}

/// Makes everything under `p` writable so it can be deleted. Follows no
/// symbolic link, `p` itself included: what a link points at is not the
/// store's.
pub fn make_writable(p: &Path) {
    let walk = walkdir::WalkDir::new(p)
        .follow_links(false)
        .follow_root_links(false);
    for e in walk.into_iter().flatten() {
        if e.file_type().is_symlink() {
            continue;
        }
        if let Ok(m) = e.metadata() {
            let mut perm = m.permissions();
            if perm.readonly() {
                #[allow(clippy::permissions_set_readonly_false)]
                perm.set_readonly(false);
                fs::set_permissions(e.path(), perm).ok();
            }
        }
    }
}

/// Makes the folders under `p` (`p` included) open to their owner, so their
/// entries can be removed. Files keep their mode: unlinking a file needs no
/// permission on the file itself, and a file here may be a hard link of a
/// store object (`out/<node>/…`, or an input a command linked into its
/// output folder), which must stay read-only. Follows no symbolic link.
fn make_dirs_writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let walk = walkdir::WalkDir::new(p)
        .follow_links(false)
        .follow_root_links(false);
    for e in walk.into_iter().flatten() {
        if !e.file_type().is_dir() {
            continue;
        }
        if let Ok(m) = e.metadata() {
            let mode = m.permissions().mode();
            if mode & 0o700 != 0o700 {
                fs::set_permissions(e.path(), fs::Permissions::from_mode(mode | 0o700)).ok();
            }
        }
    }
}

/// Removes a file, a folder (its folders opened first; its files' modes, which
/// may be those of store objects, untouched) or a symbolic link (the link
/// alone), without following any link.
pub fn remove_entry(p: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => {
            make_dirs_writable(p);
            fs::remove_dir_all(p)
        }
        Ok(_) => fs::remove_file(p),
    }
}

/// Bytes under a folder, each inode counted once.
pub fn dir_size(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let walk = walkdir::WalkDir::new(p).follow_root_links(false);
    for e in walk.into_iter().flatten() {
        if let Ok(m) = e.metadata()
            && m.is_file()
            && seen.insert((m.dev(), m.ino()))
        {
            total += m.len();
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_file_reads_any_size_to_the_same_hash_as_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, 255 << 10, (256 << 10) + 7, (9 << 20) + 3] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let p = dir.path().join(format!("f{len}"));
            fs::write(&p, &bytes).unwrap();
            let (h, n) = hash_file(&p).unwrap();
            assert_eq!(n, len as u64);
            assert_eq!(h, blake3::hash(&bytes).to_hex().to_string(), "{len} bytes");
        }
    }

    #[test]
    fn removing_a_folder_of_hard_links_leaves_the_linked_objects_read_only() {
        // `out/<node>/` holds hard links of objects: replacing it (a relink after
        // `gc --temporaries`) made the objects 666, so writing to an out file
        // changed the store.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("cache"), MAIN_VIEW);
        fs::create_dir_all(store.tmp_root()).unwrap();
        let src = store.tmp_root().join("x");
        fs::write(&src, b"object\n").unwrap();
        let (hash, _) = store.put_file(&src).unwrap();
        let obj = store.object_path(&hash);
        let out = dir.path().join("out/n");
        fs::create_dir_all(out.join("sub")).unwrap();
        fs::hard_link(&obj, out.join("x")).unwrap();
        fs::hard_link(&obj, out.join("sub/x")).unwrap();
        remove_entry(&out).unwrap();
        assert!(!out.exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&obj).unwrap().permissions().mode();
        assert_eq!(mode & 0o222, 0, "the object is writable: {mode:o}");
    }

    #[test]
    fn make_writable_and_remove_entry_follow_no_link() {
        let dir = tempfile::tempdir().unwrap();
        let mine = dir.path().join("mine");
        fs::create_dir(&mine).unwrap();
        fs::write(mine.join("ro"), b"x").unwrap();
        let mut perm = fs::metadata(mine.join("ro")).unwrap().permissions();
        perm.set_readonly(true);
        fs::set_permissions(mine.join("ro"), perm).unwrap();
        let store = dir.path().join("tmp");
        fs::create_dir(&store).unwrap();
        std::os::unix::fs::symlink(&mine, store.join("dir")).unwrap();
        std::os::unix::fs::symlink(mine.join("ro"), store.join("file")).unwrap();
        make_writable(&store.join("dir"));
        make_writable(&store.join("file"));
        make_writable(&store);
        assert!(
            fs::metadata(mine.join("ro"))
                .unwrap()
                .permissions()
                .readonly()
        );
        remove_entry(&store.join("dir")).unwrap();
        remove_entry(&store).unwrap();
        assert!(mine.join("ro").exists());
        assert!(!store.exists());
    }
}
