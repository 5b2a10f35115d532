//! Hashing a `source` node: walk the folder, filter by globs, and hash only
//! the files the stat cache cannot vouch for (in parallel).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use globset::{Glob, GlobSet, GlobSetBuilder};
use rayon::prelude::*;

use crate::spec::Node;
use crate::store::statcache::{self, Entry, Stat};
use crate::store::{RecFile, Store};

pub struct Listing {
    pub root: PathBuf,
    pub files: Vec<RecFile>,
    /// BLAKE3 of the sorted (path, hash) list: what dependents key on.
    pub content: String,
    pub hashed_files: usize,
    pub hashed_bytes: u64,
}

fn globset(globs: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(Glob::new(g).with_context(|| format!("bad glob {g:?}"))?);
    }
    Ok(b.build()?)
}

/// BLAKE3 of a user's file and its stat once read (from the open file).
/// Read, not mmap: the file can shrink while it is hashed, which would fault
/// a mapping. Small files are read whole (no zeroed buffer), large ones in
/// 1 MiB chunks.
fn hash_by_reading(path: &Path, size_hint: u64) -> Result<(blake3::Hash, Option<Stat>)> {
    use std::io::Read;
    let ctx = || format!("reading {}", path.display());
    let mut f = std::fs::File::open(path).with_context(ctx)?;
    let mut h = blake3::Hasher::new();
    if size_hint < 16 << 20 {
        let mut bytes = Vec::with_capacity(size_hint as usize + 1);
        f.read_to_end(&mut bytes).with_context(ctx)?;
        h.update(&bytes);
    } else {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).with_context(ctx)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok((h.finalize(), f.metadata().ok().map(|m| Stat::of(&m))))
}

pub fn listing_hash(files: &[RecFile]) -> String {
    crate::store::pairs_hash(files.iter().map(|f| (f.path.as_str(), f.hash.as_str())))
}

pub fn scan(
    project_dir: &Path,
    store: &Store,
    node: &Node,
    pipeline_file: &Path,
) -> Result<Listing> {
    let rel = node.params.str("path")?;
    let root = project_dir.join(rel);
    let include = node.params.list("include")?;
    let exclude = node.params.list("exclude")?;
    match std::fs::metadata(&root) {
        Err(_) => bail!(
            "node `{}`: source folder {} does not exist; create it or fix `path = {rel:?}` in {}",
            node.name,
            root.display(),
            pipeline_file.display()
        ),
        Ok(m) if !m.is_dir() => bail!(
            "node `{}`: {} is not a folder; point `path` in {} at a folder",
            node.name,
            root.display(),
            pipeline_file.display()
        ),
        Ok(_) => {}
    }
    let inc = globset(include)?;
    let exc = globset(exclude)?;
    // Walk from the canonical root, so the store's own folder (when the
    // source is the project folder) is recognised and skipped.
    let root = root
        .canonicalize()
        .with_context(|| format!("resolving {}", root.display()))?;
    let cache_dir = store.root.canonicalize().ok();
    let selected = |rel: &Path| inc.is_match(rel) && !exc.is_match(rel);

    // Walk and stat (cheap), keeping the files the globs select. What the
    // globs do not select (broken links, odd names, loops) is no concern.
    // (stat'ing happens below, in parallel)
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    let walker = walkdir::WalkDir::new(&root)
        .follow_links(true)
        .into_iter()
        .filter_entry(|e| {
            let hidden = e.depth() > 0 && e.file_name().to_string_lossy().starts_with('.');
            let is_cache =
                e.file_type().is_dir() && cache_dir.as_deref().is_some_and(|c| e.path() == c);
            !(is_cache || hidden)
        });
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(err) => {
                let rel = err.path().and_then(|p| p.strip_prefix(&root).ok());
                let hidden = |r: &Path| {
                    r.components()
                        .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
                };
                // A folder that cannot be read may hold selected files: it
                // fails the build unless the globs exclude all of it (a probe
                // name under it is excluded). A file fails when selected.
                let is_dir = err.path().is_some_and(|p| p.is_dir());
                let fatal = rel.is_some_and(|r| {
                    !hidden(r)
                        && if is_dir {
                            !(exc.is_match(r) || exc.is_match(r.join("pai-probe")))
                        } else {
                            selected(r)
                        }
                });
                if err.loop_ancestor().is_some() || !fatal {
                    continue;
                }
                let path = err
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                let why = err
                    .io_error()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| err.to_string());
                let what = if is_dir { "folder" } else { "file" };
                bail!(
                    "node `{}`: cannot read the {what} {path}: {why}; make it readable or add it \
                     to the source's `exclude` in {}",
                    node.name,
                    pipeline_file.display()
                );
            }
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let relpath = entry.path().strip_prefix(&root).unwrap_or(entry.path());
        if !selected(relpath) {
            continue;
        }
        let Some(name) = relpath.to_str() else {
            bail!(
                "node `{}`: file name {} is not UTF-8; rename it or exclude it",
                node.name,
                entry.path().display()
            );
        };
        let name = name.replace(std::path::MAIN_SEPARATOR, "/");
        found.push((name, entry.into_path()));
    }
    if found.is_empty() {
        bail!(
            "node `{}`: no file under {} matches include = {include:?}{}; add files there or fix the globs in {}",
            node.name,
            root.display(),
            if exclude.is_empty() {
                String::new()
            } else {
                format!(" (exclude = {exclude:?})")
            },
            pipeline_file.display()
        );
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));

    // One stat cache per (folder, globs): two sources over one folder keep their own.
    let id = format!("{}\0{include:?}\0{exclude:?}", root.display());
    let stat_path = store
        .root
        .join("stat")
        .join(&blake3::hash(id.as_bytes()).to_hex()[..32]);
    let cache = statcache::load(&stat_path);
    let results: Vec<Result<(RecFile, Entry, bool)>> = found
        .par_iter()
        .map(|(name, path)| {
            let stat = &std::fs::metadata(path)
                .map(|m| Stat::of(&m))
                .with_context(|| format!("reading {}", path.display()))?;
            if let Some(e) = cache.get(name)
                && e.trusted(stat)
            {
                let hash = blake3::Hash::from_bytes(e.hash).to_hex().to_string();
                return Ok((
                    RecFile {
                        path: name.clone(),
                        hash,
                        bytes: stat.size,
                    },
                    e.clone(),
                    false,
                ));
            }
            let hashed_at_ns = statcache::now_ns();
            let (hash, after) = hash_by_reading(path, stat.size)?;
            // The stat after reading: a file that changed while it was read
            // then does not match next time, so it is hashed again.
            let stat = after.unwrap_or(*stat);
            let entry = Entry {
                stat,
                hash: *hash.as_bytes(),
                hashed_at_ns,
            };
            Ok((
                RecFile {
                    path: name.clone(),
                    hash: hash.to_hex().to_string(),
                    bytes: stat.size,
                },
                entry,
                true,
            ))
        })
        .collect();
    let mut files = Vec::with_capacity(results.len());
    let mut entries = Vec::with_capacity(results.len());
    let (mut hashed_files, mut hashed_bytes) = (0, 0);
    for r in results {
        let (f, e, hashed) = r?;
        if hashed {
            hashed_files += 1;
            hashed_bytes += f.bytes;
        }
        entries.push(e);
        files.push(f);
    }
    // Every file came from a trusted entry and none went away: the cache
    // already says all of this.
    if hashed_files > 0 || cache.len() != files.len() {
        let new_cache: HashMap<String, Entry> =
            files.iter().map(|f| f.path.clone()).zip(entries).collect();
        // Best effort: a failed write only costs re-hashing next time.
        statcache::save(&stat_path, &new_cache).ok();
    }
    let content = listing_hash(&files);
    Ok(Listing {
        root,
        files,
        content,
        hashed_files,
        hashed_bytes,
    })
}
