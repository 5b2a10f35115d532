//! Per-kernel timing for benchmarks: while profiling is on, every dispatch is
//! submitted alone and waited for, and its wall time is added to its kernel's
//! total. That serialises the work (small kernels look bigger than they are in
//! a batch), so it answers "where does the time go", not "how fast is a step".

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Gpu, Kernel};

/// (file, entry) → (dispatches, seconds).
type Times = BTreeMap<(&'static str, &'static str), (u64, f64)>;

#[derive(Default)]
pub(crate) struct Profile {
    on: AtomicBool,
    times: Mutex<Times>,
}

impl Profile {
    pub(crate) fn on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }
    pub(crate) fn add(&self, k: &Kernel, d: Duration) {
        let mut t = self.times.lock().unwrap_or_else(|e| e.into_inner());
        let e = t.entry((k.file, k.entry)).or_default();
        e.0 += 1;
        e.1 += d.as_secs_f64();
    }
}

impl Gpu {
    /// Turns per-kernel timing on or off (see the module doc).
    pub fn set_profiling(&self, on: bool) {
        self.profile.on.store(on, Ordering::Relaxed);
    }

    /// The kernels timed since the last call, as (`file::entry`, dispatches, seconds), and
    /// clears them.
    pub fn take_profile(&self) -> Vec<(String, u64, f64)> {
        let mut t = self.profile.times.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *t)
            .into_iter()
            .map(|((f, e), (n, s))| (format!("{f}::{e}"), n, s))
            .collect()
    }
}
