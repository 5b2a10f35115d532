//! `pai verify`: re-hashes every object and checks records and refs.

use std::fs;

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;

use super::gc::roots;
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
    pub repaired: bool,
}

impl VerifyReport {
    pub fn clean(&self) -> bool {
        self.corrupt_objects.is_empty()
            && self.missing_objects.is_empty()
            && self.bad_records.is_empty()
            && self.dangling_refs.is_empty()
    }
}

pub fn verify(store: &Store, repair: bool) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let objects = store.all_objects();
    let results: Vec<(String, std::path::PathBuf, bool, u64)> = objects
        .par_iter()
        .map(|(hash, path)| match hash_file(path) {
            Ok((h, bytes)) => (hash.clone(), path.clone(), &h == hash, bytes),
            Err(_) => (hash.clone(), path.clone(), false, 0),
        })
        .collect();
    report.objects_checked = results.len();
    for (hash, path, ok, bytes) in results {
        report.bytes_checked += bytes;
        if !ok {
            report.corrupt_objects.push(hash);
            if repair {
                remove_entry(&path).ok();
            }
        }
    }
    for (path, rec) in store.all_records() {
        if rec.is_none() {
            report.bad_records.push(path.display().to_string());
            if repair {
                fs::remove_file(&path).ok();
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
                if broken && repair {
                    remove_entry(&view.out_dir(&node)).ok();
                }
            }
        }
    }
    report.repaired = repair;
    Ok(report)
}
