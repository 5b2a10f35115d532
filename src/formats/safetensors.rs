//! Thin, deterministic safetensors helpers on top of the `safetensors` crate: write a list of
//! named tensors to bytes, and read back named tensors checking their dtype and shape. Knows
//! nothing of models; the GPT-2 names live in `crate::model`.
//!
//! The bytes written depend only on the tensors: the crate sorts tensors (by dtype, then name)
//! and pads the header; the `__metadata__` map is exactly `{"format": "pt"}` (one key, since the
//! crate keeps metadata in a HashMap whose order would vary with more). Data is little-endian.

use anyhow::{Context, Result, bail, ensure};
use safetensors::tensor::{SafeTensors, TensorView, View};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

pub use safetensors::Dtype;

/// One tensor to write: its name, dtype, shape and little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Entry {
    /// An F32 tensor.
    pub fn f32(name: impl Into<String>, shape: &[usize], values: &[f32]) -> Entry {
        Entry {
            name: name.into(),
            dtype: Dtype::F32,
            shape: shape.to_vec(),
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// An I64 tensor.
    pub fn i64(name: impl Into<String>, shape: &[usize], values: &[i64]) -> Entry {
        Entry {
            name: name.into(),
            dtype: Dtype::I64,
            shape: shape.to_vec(),
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

impl View for &Entry {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Serialises the entries (names must be unique) with `__metadata__` `{"format": "pt"}`.
pub fn write(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut seen = BTreeSet::new();
    for e in entries {
        ensure!(
            seen.insert(e.name.as_str()),
            "safetensors: tensor name {:?} appears twice; names must be unique",
            e.name
        );
        let bits = e.shape.iter().product::<usize>() * e.dtype.bitsize();
        ensure!(
            bits == e.data.len() * 8,
            "safetensors: tensor {:?} of shape {:?} ({:?}) has {} bytes, expected {}",
            e.name,
            e.shape,
            e.dtype,
            e.data.len(),
            bits.div_ceil(8)
        );
    }
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(entries.iter().map(|e| (e.name.as_str(), e)), Some(meta))
        .map_err(|e| anyhow::anyhow!("safetensors: cannot serialise: {e}"))
}

/// A parsed safetensors buffer.
pub struct Reader<'a> {
    st: SafeTensors<'a>,
}

impl<'a> Reader<'a> {
    /// Parses the header (and checks that the data section matches it).
    pub fn new(bytes: &'a [u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            anyhow::anyhow!("not a valid safetensors file ({e}); was it written completely?")
        })?;
        Ok(Self { st })
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.st.names().into_iter().map(String::from).collect();
        n.sort();
        n
    }

    /// Checks that the file holds exactly the `expected` names: none missing, none extra.
    pub fn expect_names(&self, expected: &[String], what: &str) -> Result<()> {
        let have: BTreeSet<String> = self.names().into_iter().collect();
        let want: BTreeSet<String> = expected.iter().cloned().collect();
        if let Some(m) = want.difference(&have).next() {
            bail!(
                "{what}: tensor {m:?} is missing ({} of {} expected tensors present); \
                 was the file written for another model configuration?",
                want.intersection(&have).count(),
                want.len()
            );
        }
        if let Some(x) = have.difference(&want).next() {
            bail!(
                "{what}: unexpected tensor {x:?}; the file is not a {what} for this configuration"
            );
        }
        Ok(())
    }

    fn view(&self, name: &str, dtype: Dtype, shape: &[usize]) -> Result<TensorView<'a>> {
        let t = self
            .st
            .tensor(name)
            .map_err(|_| anyhow::anyhow!("tensor {name:?} is missing"))?;
        ensure!(
            t.dtype() == dtype,
            "tensor {name:?} is {:?}, expected {dtype:?}",
            t.dtype()
        );
        ensure!(
            t.shape() == shape,
            "tensor {name:?} has shape {:?}, expected {shape:?}",
            t.shape()
        );
        Ok(t)
    }

    /// Reads an F32 tensor, checking its dtype and shape.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.view(name, Dtype::F32, shape)?;
        Ok(t.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Reads an I64 tensor, checking its dtype and shape.
    pub fn i64(&self, name: &str, shape: &[usize]) -> Result<Vec<i64>> {
        let t = self.view(name, Dtype::I64, shape)?;
        Ok(t.data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("chunks of 8")))
            .collect())
    }

    /// The `__metadata__` map, if any.
    pub fn metadata(bytes: &[u8]) -> Result<Option<HashMap<String, String>>> {
        let (_, m) = SafeTensors::read_metadata(bytes)
            .map_err(|e| anyhow::anyhow!("not a valid safetensors file ({e})"))
            .context("reading the safetensors header")?;
        Ok(m.metadata().clone())
    }
}
