//! Token files: one little-endian u32 per token, nothing else.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

pub fn write(path: &Path, tokens: &[u32]) -> Result<()> {
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    for t in tokens {
        w.write_all(&t.to_le_bytes())?;
    }
    w.flush()?;
    Ok(())
}

pub fn decode(bytes: &[u8]) -> Result<Vec<u32>> {
    if !bytes.len().is_multiple_of(4) {
        bail!(
            "a token file must be a whole number of u32s, but has {} bytes",
            bytes.len()
        );
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}
