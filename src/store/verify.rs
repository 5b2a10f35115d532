//! `pai verify`: re-hashes every object and checks records and refs.

use std::fmt;

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;

use super::gc::{bad_refs, roots};
#[cfg(test)]
use super::make_writable;
use super::{Store, hash_file, remove_entry};

#[derive(Serialize, Debug, Default)]
pub struct VerifyReport {
    pub objects_checked: usize,
    pub bytes_checked: u64,
    /// Objects whose content does not match their name.
    pub corrupt_objects: Vec<String>,
    /// Objects a current build needs that are not in the store.
    pub missing_objects: Vec<String>,
    /// Record files that cannot be read.
    pub bad_records: Vec<String>,
    /// Refs whose record is missing or unreadable.
    pub dangling_refs: Vec<String>,
    /// Refs that cannot be read (empty, or not a build key): `gc` would
    /// take their node's current build for unreferenced.
    pub bad_refs: Vec<String>,
    pub repaired: bool,
    /// With `--repair`: what could not be removed, and why.
    pub repair_failed: Vec<String>,
}

impl VerifyReport {
    pub fn clean(&self) -> bool {
        self.corrupt_objects.is_empty()
            && self.missing_objects.is_empty()
            && self.bad_records.is_empty()
            && self.dangling_refs.is_empty()
            && self.bad_refs.is_empty()
    }

    /// Whether `--repair` removed everything it reported.
    pub fn repair_ok(&self) -> bool {
        self.repair_failed.is_empty()
    }
}

/// `pai verify [--repair]`: the report, and what its text needs to say
/// where each broken thing was.
#[derive(Serialize)]
pub struct VerifyRun {
    #[serde(flatten)]
    pub report: VerifyReport,
    #[serde(skip)]
    pub repair: bool,
    #[serde(skip)]
    store: Store,
}

impl VerifyRun {
    /// 1 when the store is not valid, or `--repair` left something broken.
    pub fn exit_code(&self) -> u8 {
        let r = &self.report;
        if self.repair && !r.repair_ok() {
            return 1;
        }
        if r.clean() || self.repair { 0 } else { 1 }
    }
}

impl fmt::Display for VerifyRun {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let (r, repair, store) = (&self.report, self.repair, &self.store);
        writeln!(
            f,
            "checked {} objects ({})",
            r.objects_checked,
            crate::report::size(r.bytes_checked)
        )?;
        // "(deleted)" only where the delete worked.
        let fate = |path: &str| {
            if !repair {
                ""
            } else if r.repair_failed.iter().any(|f| f.starts_with(path)) {
                " (NOT deleted: see below)"
            } else {
                " (deleted)"
            }
        };
        for h in &r.corrupt_objects {
            let path = store.object_path(h).display().to_string();
            writeln!(f, "corrupt object {h}{}", fate(&path))?;
        }
        for h in &r.missing_objects {
            writeln!(
                f,
                "missing object {h} (a current build needs it; `pai build` rebuilds it)"
            )?;
        }
        for p in &r.bad_records {
            writeln!(f, "unreadable record {p}{}", fate(p))?;
        }
        for n in &r.dangling_refs {
            writeln!(
                f,
                "ref of `{n}` names a missing record (`pai build` rebuilds it)"
            )?;
        }
        for n in &r.bad_refs {
            let (view, node) = n.split_once(':').unwrap_or((super::MAIN_VIEW, n));
            let path = Store::new(store.root.clone(), view).refs_dir().join(node);
            let path = path.display().to_string();
            writeln!(
                f,
                "unreadable ref of `{n}` (empty or not a build key){}",
                match fate(&path) {
                    " (deleted)" => " (deleted; `pai build` rebuilds the node)",
                    f => f,
                }
            )?;
        }
        for x in &r.repair_failed {
            writeln!(f, "could not repair {x}")?;
        }
        if repair && !r.repair_ok() {
            writeln!(
                f,
                "the repair is incomplete: fix the permissions of what is named above \
                 and run `pai verify --repair` again"
            )?;
        } else if r.clean() {
            writeln!(f, "the store is valid")?;
        } else if !repair {
            writeln!(
                f,
                "run `pai verify --repair` to drop what is broken; the next build rebuilds it"
            )?;
        }
        Ok(())
    }
}

/// `pai verify`: [`verify`] under the store's lock (saying so while waiting).
pub fn run(store: Store, repair: bool, ui: &crate::report::Ui) -> Result<VerifyRun> {
    let _lock = super::lock::acquire(&store.root, "verify", &|m| ui.message(m))?;
    let report = verify(&store, repair)?;
    Ok(VerifyRun {
        report,
        repair,
        store,
    })
}

pub fn verify(store: &Store, repair: bool) -> Result<VerifyReport> {
    verify_with(store, repair, &|p| remove_entry(p))
}

/// [`verify`] with the way `--repair` deletes (tests make it fail).
pub fn verify_with(
    store: &Store,
    repair: bool,
    remove: &dyn Fn(&std::path::Path) -> std::io::Result<()>,
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let objects = store.all_objects();
    let results: Vec<(String, std::path::PathBuf, bool, u64)> = objects
        .par_iter()
        .map(|(hash, path)| {
            // An object is a file pai wrote: a link (whatever it points at)
            // or a folder there is damage.
            let regular = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
            match hash_file(path) {
                Ok((h, bytes)) if regular => (hash.clone(), path.clone(), &h == hash, bytes),
                _ => (hash.clone(), path.clone(), false, 0),
            }
        })
        .collect();
    report.objects_checked = results.len();
    for (hash, path, ok, bytes) in results {
        report.bytes_checked += bytes;
        if !ok {
            report.corrupt_objects.push(hash);
            if repair && let Err(e) = remove(&path) {
                report
                    .repair_failed
                    .push(format!("{}: {e}", path.display()));
            }
        }
    }
    for (path, rec) in store.all_records() {
        if rec.is_none() {
            report.bad_records.push(path.display().to_string());
            if repair && let Err(e) = remove(&path) {
                report
                    .repair_failed
                    .push(format!("{}: {e}", path.display()));
            }
        }
    }
    for (view, node, key) in roots(store) {
        let label = if view.view == super::MAIN_VIEW {
            node.clone()
        } else {
            format!("{}:{node}", view.view)
        };
        match view.record(&key) {
            None => report.dangling_refs.push(label),
            Some(rec) => {
                let mut broken = false;
                for o in rec.live_outputs() {
                    let corrupt = report.corrupt_objects.contains(&o.hash);
                    if corrupt || !store.object_path(&o.hash).exists() {
                        broken = true;
                        if !corrupt && !report.missing_objects.contains(&o.hash) {
                            report.missing_objects.push(o.hash.clone());
                        }
                    }
                }
                // Its out/ links share the corrupt inodes: drop them so no one
                // reads them; the next build rebuilds the node.
                let out = view.out_dir(&node);
                if broken
                    && repair
                    && let Err(e) = remove(&out)
                {
                    report.repair_failed.push(format!("{}: {e}", out.display()));
                }
            }
        }
    }
    for (path, label) in bad_refs(store) {
        report.bad_refs.push(label);
        if repair && let Err(e) = remove(&path) {
            report
                .repair_failed
                .push(format!("{}: {e}", path.display()));
        }
    }
    report.repaired = repair;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A store with one build of `n` whose object `x` is damaged (same size).
    fn damaged() -> (tempfile::TempDir, Store, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("cache"), super::super::MAIN_VIEW);
        fs::create_dir_all(store.tmp_root()).unwrap();
        let src = store.tmp_root().join("x");
        fs::write(&src, b"constant\n").unwrap();
        let (hash, _) = store.put_file(&src).unwrap();
        let obj = store.object_path(&hash);
        make_writable(&obj);
        fs::write(&obj, b"constanT\n").unwrap();
        (dir, store, obj)
    }

    #[test]
    fn a_repair_that_cannot_delete_is_reported_not_hidden() {
        let (_dir, store, obj) = damaged();
        let fail = |_: &std::path::Path| -> std::io::Result<()> {
            Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
        };
        let r = verify_with(&store, true, &fail).unwrap();
        assert_eq!(r.corrupt_objects.len(), 1);
        assert!(!r.repair_ok());
        assert!(
            r.repair_failed[0].starts_with(&obj.display().to_string()),
            "{:?}",
            r.repair_failed
        );
        assert!(obj.exists());
        let r = verify(&store, true).unwrap();
        assert!(r.repair_ok(), "{:?}", r.repair_failed);
        assert!(!obj.exists());
    }

    #[test]
    fn an_object_that_is_a_symbolic_link_is_corrupt_even_to_the_right_bytes() {
        let (dir, store, obj) = damaged();
        let good = dir.path().join("good");
        fs::write(&good, b"constant\n").unwrap();
        fs::remove_file(&obj).unwrap();
        std::os::unix::fs::symlink(&good, &obj).unwrap();
        let r = verify(&store, true).unwrap();
        assert_eq!(r.corrupt_objects.len(), 1);
        assert!(
            std::fs::symlink_metadata(&obj).is_err(),
            "the link was not removed"
        );
        assert!(good.exists(), "what the link pointed at was removed");
    }

    #[test]
    fn verify_reads_objects_and_reports_a_truncated_one() {
        let (_dir, store, obj) = damaged();
        fs::write(&obj, b"").unwrap();
        let r = verify(&store, false).unwrap();
        assert_eq!(r.corrupt_objects.len(), 1);
    }
}
