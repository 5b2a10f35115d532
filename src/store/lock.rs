//! One `pai` process writes a store at a time: an advisory lock on
//! `cache/lock`. The OS drops the lock when its holder dies, so a lock left by
//! a killed process is simply taken over; a second live process waits and says so.

use std::fs::{self, File, TryLockError};
use std::path::Path;

use anyhow::{Context, Result};

pub struct StoreLock {
    _file: File,
}

/// Takes the store's lock, waiting (and telling `notify` once) while another
/// process holds it.
pub fn acquire(cache: &Path, what: &str, notify: &dyn Fn(&str)) -> Result<StoreLock> {
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let path = cache.join("lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let owner = fs::read_to_string(cache.join("lock.owner")).unwrap_or_default();
            let owner = owner.trim();
            notify(&format!(
                "waiting for another pai process to finish with {} ({})",
                cache.display(),
                if owner.is_empty() {
                    "owner unknown"
                } else {
                    owner
                }
            ));
            file.lock()
                .with_context(|| format!("locking {}", path.display()))?;
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    // Atomic, so a waiting process never reads it half-written.
    super::write_atomic_volatile(
        &cache.join("lock.owner"),
        format!("pid {}: pai {what}\n", std::process::id()).as_bytes(),
    )
    .ok();
    Ok(StoreLock { _file: file })
}
