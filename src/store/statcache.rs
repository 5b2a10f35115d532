//! Stat cache of a source tree: (path, size, mtime, ctime, inode) → BLAKE3, so
//! an unchanged tree is stat'ed, not read. An entry whose mtime is not safely
//! older than the moment it was hashed is re-hashed ("racily clean"): an edit
//! within the file system's timestamp granularity could otherwise go unseen.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use anyhow::Result;

use super::write_atomic_volatile as write_atomic;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
}

impl Stat {
    pub fn of(meta: &fs::Metadata) -> Stat {
        use std::os::unix::fs::MetadataExt;
        Stat {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            ino: meta.ino(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub stat: Stat,
    pub hash: [u8; 32],
    /// Wall clock (ns) taken just before the file was read for hashing.
    pub hashed_at_ns: i64,
}

/// How much older than the hashing moment an mtime must be to trust the
/// entry: file systems with whole-second timestamps need a full 2 s; with
/// sub-second stamps, the kernel's timestamp tick (≤ 10 ms) is the risk.
pub fn racy_margin_ns(mtime_ns: i64) -> i64 {
    if mtime_ns % 1_000_000_000 == 0 {
        2_000_000_000
    } else {
        100_000_000
    }
}

impl Entry {
    /// Whether the cached hash can stand for a file with this stat.
    pub fn trusted(&self, now: &Stat) -> bool {
        // ctime too: a rewrite that restores the old mtime (`cp -p`, `touch -d`)
        // still moves ctime.
        let changed = now.mtime_ns.max(now.ctime_ns);
        self.stat == *now && self.hashed_at_ns - changed >= racy_margin_ns(changed)
    }
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

const MAGIC: &[u8; 8] = b"paistat1";

pub fn load(path: &Path) -> HashMap<String, Entry> {
    let Ok(bytes) = fs::read(path) else {
        return HashMap::new();
    };
    decode(&bytes).unwrap_or_default()
}

fn decode(b: &[u8]) -> Option<HashMap<String, Entry>> {
    let mut r = Reader { b, pos: 0 };
    if r.take(8)? != MAGIC {
        return None;
    }
    let n = r.u64()? as usize;
    let mut map = HashMap::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let len = r.u64()? as usize;
        let name = std::str::from_utf8(r.take(len)?).ok()?.to_string();
        let stat = Stat {
            size: r.u64()?,
            mtime_ns: r.u64()? as i64,
            ctime_ns: r.u64()? as i64,
            ino: r.u64()?,
        };
        let hash: [u8; 32] = r.take(32)?.try_into().ok()?;
        let hashed_at_ns = r.u64()? as i64;
        map.insert(
            name,
            Entry {
                stat,
                hash,
                hashed_at_ns,
            },
        );
    }
    Some(map)
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

pub fn save(path: &Path, map: &HashMap<String, Entry>) -> Result<()> {
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    let mut b = Vec::with_capacity(16 + map.len() * 96);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&(map.len() as u64).to_le_bytes());
    for name in names {
        let e = &map[name];
        b.extend_from_slice(&(name.len() as u64).to_le_bytes());
        b.extend_from_slice(name.as_bytes());
        for v in [
            e.stat.size,
            e.stat.mtime_ns as u64,
            e.stat.ctime_ns as u64,
            e.stat.ino,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&e.hash);
        b.extend_from_slice(&(e.hashed_at_ns as u64).to_le_bytes());
    }
    write_atomic(path, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(mtime_ns: i64) -> Stat {
        Stat {
            size: 10,
            mtime_ns,
            ctime_ns: mtime_ns,
            ino: 7,
        }
    }

    #[test]
    fn racily_clean_entries_are_not_trusted() {
        let t = 1_700_000_000_123_456_789;
        // Hashed 1 ms after the last write: a same-size edit in the same tick
        // would keep every stat field, so the entry must not be trusted.
        let e = Entry {
            stat: stat(t),
            hash: [0; 32],
            hashed_at_ns: t + 1_000_000,
        };
        assert!(!e.trusted(&stat(t)));
        // Hashed well after the write: trusted while the stat matches.
        let e = Entry {
            stat: stat(t),
            hash: [0; 32],
            hashed_at_ns: t + 500_000_000,
        };
        assert!(e.trusted(&stat(t)));
        assert!(!e.trusted(&Stat {
            size: 11,
            ..stat(t)
        }));
        assert!(!e.trusted(&Stat {
            ctime_ns: t + 1,
            ..stat(t)
        }));
        // Whole-second timestamps: the same second is never safe.
        let s = 1_700_000_000_000_000_000;
        let e = Entry {
            stat: stat(s),
            hash: [0; 32],
            hashed_at_ns: s + 900_000_000,
        };
        assert!(!e.trusted(&stat(s)));
    }

    #[test]
    fn round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let mut m = HashMap::new();
        m.insert(
            "a/b.md".to_string(),
            Entry {
                stat: stat(5),
                hash: [3; 32],
                hashed_at_ns: 99,
            },
        );
        save(&p, &m).unwrap();
        assert_eq!(load(&p), m);
        fs::write(&p, b"paistat1\xff\xff").unwrap();
        assert!(load(&p).is_empty());
    }
}
