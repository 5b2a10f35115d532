//! Work folders (`cache/work/<key>/`): a running node's resumable state, such
//! as a training run's checkpoints. The folder of an action key survives a
//! killed or failed build, so the next build of the same key resumes from it;
//! it is removed when that key commits, or by `gc` once no pipeline file's
//! node would build that key.
//!
//! A build holds an advisory lock on `cache/work/<key>.lock` while it uses the
//! folder, so anyone can tell a live folder (its lock is held) from an
//! abandoned one (the OS drops the lock of a dead process): `gc` removes only
//! abandoned ones.

use std::fs::{self, File, TryLockError};
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::{Store, remove_entry};

/// A work folder in use: the lock is released when this is dropped.
pub struct WorkDir {
    pub path: PathBuf,
    _lock: File,
}

impl Store {
    pub fn work_root(&self) -> PathBuf {
        self.root.join("work")
    }

    pub fn work_path(&self, key: &str) -> PathBuf {
        self.work_root().join(key)
    }

    /// Locks the work folder of `key` and opens it (creating it if needed).
    /// While another holder uses it (two nodes of one key in one build), this
    /// waits: one key's state is never written by two runs at once.
    pub fn open_work(&self, key: &str) -> Result<WorkDir> {
        let root = self.work_root();
        fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let lock_path = root.join(format!("{key}.lock"));
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => lock
                .lock()
                .with_context(|| format!("locking {}", lock_path.display()))?,
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", lock_path.display()));
            }
        }
        let path = self.work_path(key);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(WorkDir { path, _lock: lock })
    }

    /// Removes the work folder of a committed key. Its lock file stays (a
    /// waiter may hold it open); `gc` removes unused ones.
    pub fn remove_work(&self, work: WorkDir) -> Result<()> {
        remove_tree(&work.path)
    }

    /// Work folders no live process holds: (key, path, bytes). Lock files
    /// whose folder is gone and that nobody holds are removed on the way.
    pub fn abandoned_work(&self) -> Vec<(String, PathBuf, u64)> {
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(self.work_root()) else {
            return out;
        };
        let held = |key: &str| {
            File::open(self.work_root().join(format!("{key}.lock")))
                .is_ok_and(|f| matches!(f.try_lock(), Err(TryLockError::WouldBlock)))
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(key) = name.strip_suffix(".lock") {
                if !self.work_path(key).exists() && !held(key) {
                    fs::remove_file(e.path()).ok();
                }
                continue;
            }
            // A symbolic link there is not a work folder: left alone.
            if e.file_type().is_ok_and(|t| t.is_dir()) && !held(&name) {
                out.push((name, e.path(), super::dir_size(&e.path())));
            }
        }
        out.sort();
        out
    }

    /// Removes an abandoned work folder (gc).
    pub fn remove_abandoned_work(&self, key: &str) -> Result<()> {
        remove_tree(&self.work_path(key))?;
        fs::remove_file(self.work_root().join(format!("{key}.lock"))).ok();
        Ok(())
    }
}

fn remove_tree(path: &std::path::Path) -> Result<()> {
    remove_entry(path).with_context(|| format!("removing {}", path.display()))
}
