//! A remote in a local folder (`file:///path`): `cas/<hash>`, `ac/<key>`.
//! Writes go to a temporary file and are renamed (objects) or hard-linked
//! (records: `link` fails if the name exists, which is put-if-absent), so a
//! reader never sees part of a file.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{RResult, Remote, RemoteError, object_name, record_name};

pub struct Folder {
    root: PathBuf,
    url: String,
}

impl Folder {
    pub fn new(root: &Path, url: &str) -> Folder {
        Folder {
            root: root.to_path_buf(),
            url: url.to_string(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// A fresh temporary file beside the destination's folder.
    fn temp(&self) -> RResult<(PathBuf, fs::File)> {
        let dir = self.root.join("tmp");
        fs::create_dir_all(&dir).map_err(|e| self.io(&dir, e))?;
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = dir.join(format!("{}-{n}", std::process::id()));
        let f = fs::File::create(&p).map_err(|e| self.io(&p, e))?;
        Ok((p, f))
    }

    fn io(&self, p: &Path, e: io::Error) -> RemoteError {
        let m = format!("{}: {e}", p.display());
        if e.kind() == io::ErrorKind::PermissionDenied {
            RemoteError::Denied(m)
        } else {
            RemoteError::Unavailable(m)
        }
    }

    fn read(&self, name: &str) -> RResult<Option<fs::File>> {
        let p = self.path(name);
        match fs::File::open(&p) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A folder that is not there at all is a remote that is down
                // (an unmounted share), not a miss.
                if self.root.is_dir() {
                    Ok(None)
                } else {
                    Err(self.io(&self.root, e))
                }
            }
            Err(e) => Err(self.io(&p, e)),
        }
    }
}

impl Remote for Folder {
    fn url(&self) -> &str {
        &self.url
    }

    fn get_object(&self, hash: &str, dst: &mut dyn Write) -> RResult<bool> {
        let name = object_name(hash)?;
        let Some(mut f) = self.read(&name)? else {
            return Ok(false);
        };
        io::copy(&mut f, dst).map_err(|e| self.io(&self.path(&name), e))?;
        Ok(true)
    }

    fn head_object(&self, hash: &str) -> RResult<Option<u64>> {
        let name = object_name(hash)?;
        Ok(self
            .read(&name)?
            .and_then(|f| f.metadata().ok())
            .map(|m| m.len()))
    }

    fn put_object(&self, hash: &str, src: &Path) -> RResult<()> {
        let name = object_name(hash)?;
        let dst = self.path(&name);
        let (tmp, mut f) = self.temp()?;
        let r = (|| -> io::Result<()> {
            io::copy(&mut fs::File::open(src)?, &mut f)?;
            f.sync_all()?;
            fs::create_dir_all(dst.parent().unwrap_or(&self.root))?;
            fs::rename(&tmp, &dst)
        })();
        if let Err(e) = r {
            fs::remove_file(&tmp).ok();
            return Err(self.io(&dst, e));
        }
        Ok(())
    }

    fn get_record(&self, key: &str) -> RResult<Option<Vec<u8>>> {
        let name = record_name(key)?;
        let Some(mut f) = self.read(&name)? else {
            return Ok(None);
        };
        let mut v = Vec::new();
        io::Read::read_to_end(&mut f, &mut v).map_err(|e| self.io(&self.path(&name), e))?;
        Ok(Some(v))
    }

    fn put_record_if_absent(&self, key: &str, bytes: &[u8]) -> RResult<bool> {
        let name = record_name(key)?;
        let dst = self.path(&name);
        let (tmp, mut f) = self.temp()?;
        let r = (|| -> io::Result<bool> {
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::create_dir_all(dst.parent().unwrap_or(&self.root))?;
            match fs::hard_link(&tmp, &dst) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        })();
        fs::remove_file(&tmp).ok();
        r.map_err(|e| self.io(&dst, e))
    }
}
