//! GGUF v3 (ggml `docs/gguf.md`): a writer and a strict reader, no crate.
//!
//! Layout, all little-endian: `GGUF`, u32 version (3), u64 tensor count, u64 key/value count;
//! the key/values (key: u64 length + UTF-8, u32 value type, value); the tensor infos (name,
//! u32 n_dims, u64 dims with the contiguous dimension first, u32 GGML type, u64 offset into the
//! data section); then, at the next multiple of `general.alignment` (default 32), the data
//! section, each tensor at an aligned offset and padded with zeros to the alignment.
//!
//! The reader never panics on a bad file: every refusal says what is wrong and at which byte.

use std::collections::HashSet;

use anyhow::{Context, Result, bail, ensure};

pub const MAGIC: &[u8; 4] = b"GGUF";
pub const VERSION: u32 = 3;
/// `general.alignment` when the file does not set it.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// GGML tensor type ids this reader and writer know.
pub const GGML_TYPE_F32: u32 = 0;
pub const GGML_TYPE_F16: u32 = 1;
pub const GGML_TYPE_Q4_0: u32 = 2;
pub const GGML_TYPE_Q8_0: u32 = 8;

/// Most dimensions a ggml tensor has.
pub const MAX_DIMS: u32 = 4;

/// (elements per block, bytes per block, name) of a GGML type this module knows.
pub fn type_layout(ggml_type: u32) -> Option<(u64, u64, &'static str)> {
    match ggml_type {
        GGML_TYPE_F32 => Some((1, 4, "F32")),
        GGML_TYPE_F16 => Some((1, 2, "F16")),
        GGML_TYPE_Q4_0 => Some((32, 18, "Q4_0")),
        GGML_TYPE_Q8_0 => Some((32, 34, "Q8_0")),
        _ => None,
    }
}

/// The name of a GGML type (`"type 99"` for one this module does not know).
pub fn type_name(ggml_type: u32) -> String {
    type_layout(ggml_type)
        .map(|l| l.2.to_string())
        .unwrap_or_else(|| format!("type {ggml_type}"))
}

/// Bytes a tensor of these dims and type takes, checked: the type is known, `ne0` is a multiple
/// of the type's block size and the product does not overflow.
pub fn tensor_nbytes(name: &str, dims: &[u64], ggml_type: u32) -> Result<u64> {
    let Some((blk, bb, tname)) = type_layout(ggml_type) else {
        bail!(
            "tensor {name:?}: unknown GGML type {ggml_type} (pai knows F32 0, F16 1, Q4_0 2, Q8_0 8)"
        );
    };
    let ne0 = dims.first().copied().unwrap_or(1);
    ensure!(
        ne0.is_multiple_of(blk),
        "tensor {name:?}: its first dimension {ne0} is not a multiple of the {tname} block size {blk}"
    );
    let mut n = (ne0 / blk)
        .checked_mul(bb)
        .with_context(|| format!("tensor {name:?}: dims {dims:?} overflow a 64-bit byte size"))?;
    for &d in dims.iter().skip(1) {
        n = n.checked_mul(d).with_context(|| {
            format!("tensor {name:?}: dims {dims:?} overflow a 64-bit byte size")
        })?;
    }
    Ok(n)
}

/// A key/value's value. Arrays are homogeneous (the writer checks it).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// GGUF value type id (0..=12).
    pub fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::Str(_) => 8,
            Value::Array(_) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }
    /// An integer value of any width, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One tensor's description. `offset` is relative to [`Gguf::data_start`].
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Contiguous dimension first (ggml's ne0, ne1, …).
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    pub offset: u64,
}

impl TensorInfo {
    /// Bytes of data (checked when the file was read).
    pub fn nbytes(&self) -> Result<u64> {
        tensor_nbytes(&self.name, &self.dims, self.ggml_type)
    }
}

/// A parsed GGUF file: its key/values and tensor infos in file order, and where the data
/// section starts (absolute byte offset).
#[derive(Clone, Debug, PartialEq)]
pub struct Gguf {
    pub kv: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub data_start: u64,
}

impl Gguf {
    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.kv.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    /// The info of a tensor.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
    /// The data bytes of a tensor within `file` (the bytes this was read from).
    pub fn tensor_data<'a>(&self, file: &'a [u8], name: &str) -> Result<&'a [u8]> {
        let t = self
            .tensor(name)
            .with_context(|| format!("the GGUF file has no tensor {name:?}"))?;
        let n = t.nbytes()?;
        let start = self.data_start.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(n));
        match (start, end) {
            (Some(s), Some(e)) if e <= file.len() as u64 => Ok(&file[s as usize..e as usize]),
            _ => bail!(
                "tensor {name:?}: its data (offset {} + {n} bytes after byte {}) is outside the {}-byte file",
                t.offset,
                self.data_start,
                file.len()
            ),
        }
    }
}

/// A bounds-checked little-endian cursor whose errors name the byte offset.
struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cur<'a> {
    fn left(&self) -> usize {
        self.b.len() - self.pos
    }
    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.left() as u64 {
            bail!(
                "GGUF truncated in {} at byte {}: needs {n} bytes, the file has {} left",
                what(),
                self.pos,
                self.left()
            );
        }
        let s = &self.b[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        Ok(self.take(N as u64, what)?.try_into().expect("N bytes"))
    }
    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let at = self.pos;
        let n = self.u64(what)?;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec())
            .map_err(|_| anyhow::anyhow!("GGUF {} at byte {at}: the string is not UTF-8", what()))
    }
    /// A value of type `ty`; `depth` bounds nested arrays.
    fn value(
        &mut self,
        ty: u32,
        at: usize,
        depth: u32,
        what: &dyn Fn() -> String,
    ) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.arr::<1>(what)?[0]),
            1 => Value::I8(self.arr::<1>(what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.arr(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.arr(what)?)),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(i32::from_le_bytes(self.arr(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.arr(what)?)),
            7 => {
                let p = self.pos;
                match self.arr::<1>(what)?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => bail!(
                        "GGUF {} at byte {p}: bool value {b} is neither 0 nor 1",
                        what()
                    ),
                }
            }
            8 => Value::Str(self.string(what)?),
            9 => {
                ensure!(
                    depth < 4,
                    "GGUF {} at byte {at}: arrays nested deeper than 4",
                    what()
                );
                let et_at = self.pos;
                let et = self.u32(what)?;
                if et > 12 {
                    bail!(
                        "GGUF {} at byte {et_at}: unknown array element type {et} (GGUF types are 0..=12)",
                        what()
                    );
                }
                let n = self.u64(what)?;
                // Every element takes at least one byte: a count beyond what is left is truncation.
                if n > self.left() as u64 {
                    bail!(
                        "GGUF truncated in {} at byte {}: an array of {n} elements, the file has {} bytes left",
                        what(),
                        self.pos,
                        self.left()
                    );
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let p = self.pos;
                    v.push(self.value(et, p, depth + 1, what)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(i64::from_le_bytes(self.arr(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.arr(what)?)),
            t => bail!(
                "GGUF {} at byte {at}: unknown value type {t} (GGUF types are 0..=12)",
                what()
            ),
        })
    }
}

/// Parses and checks a GGUF v3 file: header, key/values, tensor infos, and that every tensor's
/// data lies aligned, without overlap, inside the file.
pub fn read(bytes: &[u8]) -> Result<Gguf> {
    let mut c = Cur { b: bytes, pos: 0 };
    let hdr = || "the header".to_string();
    let magic = c.take(4, &hdr)?;
    if magic != MAGIC {
        bail!(
            "not a GGUF file: the magic at byte 0 is {magic:02x?}, expected \"GGUF\" ({:02x?})",
            MAGIC
        );
    }
    let version = c.u32(&hdr)?;
    if version != VERSION {
        bail!("GGUF version {version} at byte 4 is not supported: pai reads version {VERSION}");
    }
    let n_tensors = c.u64(&hdr)?;
    let n_kv = c.u64(&hdr)?;
    // A tensor info takes at least 24 bytes and a key/value at least 13: an absurd count is
    // caught by truncation, and never allocated for.
    let cap = |n: u64, min: usize| n.min((bytes.len() / min) as u64) as usize;
    let mut kv: Vec<(String, Value)> = Vec::with_capacity(cap(n_kv, 13));
    let mut keys = HashSet::new();
    for i in 0..n_kv {
        let at = c.pos;
        let what = || format!("key/value {i} of {n_kv}");
        let key = c.string(&what)?;
        let what = || format!("key/value {i} of {n_kv} ({key:?})");
        let ty_at = c.pos;
        let ty = c.u32(&what)?;
        let v = c.value(ty, ty_at, 0, &what)?;
        if !keys.insert(key.clone()) {
            bail!("GGUF key {key:?} at byte {at} appears twice");
        }
        kv.push((key, v));
    }

    let alignment = match kv.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, Value::U32(a))) if *a > 0 && a.is_power_of_two() => *a as u64,
        Some((_, v)) => bail!("GGUF general.alignment is {v:?}: it must be a u32 power of two"),
    };

    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(cap(n_tensors, 24));
    let mut names = HashSet::new();
    let mut info_at = Vec::with_capacity(cap(n_tensors, 24));
    for i in 0..n_tensors {
        let at = c.pos;
        let what = || format!("tensor info {i} of {n_tensors}");
        let name = c.string(&what)?;
        let what = || format!("tensor info {i} of {n_tensors} ({name:?})");
        let nd_at = c.pos;
        let n_dims = c.u32(&what)?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            bail!(
                "GGUF tensor info {i} of {n_tensors} ({name:?}): {n_dims} dimensions at byte {nd_at}; ggml tensors have 1 to {MAX_DIMS}"
            );
        }
        let dims_at = c.pos;
        let dims = (0..n_dims)
            .map(|_| c.u64(&what))
            .collect::<Result<Vec<u64>>>()?;
        let ty_at = c.pos;
        let ggml_type = c.u32(&what)?;
        if type_layout(ggml_type).is_none() {
            bail!(
                "GGUF tensor {name:?}: unknown tensor type {ggml_type} at byte {ty_at} (pai reads F32 0, F16 1, Q4_0 2, Q8_0 8)"
            );
        }
        tensor_nbytes(&name, &dims, ggml_type)
            .with_context(|| format!("GGUF tensor info at byte {at} (dims at byte {dims_at})"))?;
        let off_at = c.pos;
        let offset = c.u64(&what)?;
        if !names.insert(name.clone()) {
            bail!("GGUF tensor name {name:?} at byte {at} appears twice");
        }
        info_at.push(off_at);
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        });
    }

    let data_start = (c.pos as u64).next_multiple_of(alignment);
    let len = bytes.len() as u64;
    // Offsets: aligned, inside the file, no two tensors overlapping.
    let mut spans = Vec::with_capacity(tensors.len());
    for (t, &off_at) in tensors.iter().zip(&info_at) {
        if !t.offset.is_multiple_of(alignment) {
            bail!(
                "GGUF tensor {:?}: offset {} (at byte {off_at}) is not a multiple of the alignment {alignment}",
                t.name,
                t.offset
            );
        }
        let n = t.nbytes()?;
        let start = data_start.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(n));
        match (start, end) {
            (Some(_), Some(e)) if e <= len => spans.push((t.offset, t.offset + n, &t.name, off_at)),
            _ => bail!(
                "GGUF truncated in the data of tensor {:?}: it needs bytes {}..{} (offset {} read at byte {off_at}), the file has {len}",
                t.name,
                data_start.saturating_add(t.offset),
                data_start.saturating_add(t.offset).saturating_add(n),
                t.offset
            ),
        }
    }
    spans.sort();
    for w in spans.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if b.0 < a.1 {
            bail!(
                "GGUF tensors {:?} (offset {}) and {:?} (offset {}, read at byte {}) overlap in the data section",
                a.2,
                a.0,
                b.2,
                b.0,
                b.3
            );
        }
    }
    // What follows the last tensor is at most its padding: more means the header's tensor count
    // does not match the file.
    let data_end = data_start + spans.last().map(|s| s.1).unwrap_or(0);
    if len > data_end.next_multiple_of(alignment) {
        bail!(
            "GGUF tensor count {n_tensors} (at byte 8) does not match the file: {} bytes follow the last tensor's data at byte {data_end}",
            len - data_end
        );
    }
    Ok(Gguf {
        kv,
        tensors,
        data_start,
    })
}

/// Builds a GGUF v3 file; the bytes are deterministic (key/values and tensors in the order
/// added). The alignment is `general.alignment` if added (a u32), else 32.
#[derive(Clone, Debug, Default)]
pub struct Writer {
    pub kv: Vec<(String, Value)>,
    /// (name, dims contiguous first, GGML type, data bytes).
    pub tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, key: &str, v: &Value) -> Result<()> {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::Str(s) => put_str(out, s),
        Value::Array(a) => {
            // An empty array is written as an array of u8.
            let et = a.first().map(Value::type_id).unwrap_or(0);
            if let Some(i) = a.iter().position(|e| e.type_id() != et) {
                bail!(
                    "GGUF key {key:?}: array element {i} is of type {} but element 0 is of type {et}: arrays are homogeneous",
                    a[i].type_id()
                );
            }
            out.extend_from_slice(&et.to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            for e in a {
                put_value(out, key, e)?;
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
    Ok(())
}

/// The bytes of a GGUF file with these key/values and tensors (name, dims,
/// GGML type), without making it: header, key/values, tensor infos, and the
/// aligned data — what [`Writer::finish`] would write.
pub fn file_bytes(kv: &[(String, Value)], tensors: &[(String, Vec<u64>, u32)]) -> Result<u64> {
    let alignment = match kv.iter().find(|(k, _)| k == "general.alignment") {
        Some((_, Value::U32(a))) if *a > 0 && a.is_power_of_two() => *a as u64,
        _ => DEFAULT_ALIGNMENT,
    };
    let mut head = Vec::new();
    for (k, v) in kv {
        put_str(&mut head, k);
        head.extend_from_slice(&v.type_id().to_le_bytes());
        put_value(&mut head, k, v)?;
    }
    let mut n = 24 + head.len() as u64;
    let mut data = 0u64;
    for (name, dims, ty) in tensors {
        n += 8 + name.len() as u64 + 4 + 8 * dims.len() as u64 + 4 + 8;
        data = (data + tensor_nbytes(name, dims, *ty)?).next_multiple_of(alignment);
    }
    Ok(n.next_multiple_of(alignment) + data)
}

impl Writer {
    pub fn new() -> Self {
        Writer::default()
    }
    pub fn kv(&mut self, key: &str, v: Value) {
        self.kv.push((key.to_string(), v));
    }
    pub fn tensor(&mut self, name: &str, dims: &[u64], ggml_type: u32, bytes: Vec<u8>) {
        self.tensors
            .push((name.to_string(), dims.to_vec(), ggml_type, bytes));
    }
    /// The file's bytes. Refuses duplicate keys or tensor names, a heterogeneous array, a bad
    /// alignment, and tensor data whose length does not fit its dims and type.
    pub fn finish(self) -> Result<Vec<u8>> {
        let alignment = match self.kv.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, Value::U32(a))) if *a > 0 && a.is_power_of_two() => *a as u64,
            Some((_, v)) => bail!("general.alignment is {v:?}: it must be a u32 power of two"),
        };
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kv.len() as u64).to_le_bytes());
        let mut keys = HashSet::new();
        for (k, v) in &self.kv {
            ensure!(keys.insert(k.as_str()), "GGUF key {k:?} added twice");
            put_str(&mut out, k);
            out.extend_from_slice(&v.type_id().to_le_bytes());
            put_value(&mut out, k, v)?;
        }
        let mut names = HashSet::new();
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for (name, dims, ty, data) in &self.tensors {
            ensure!(
                names.insert(name.as_str()),
                "GGUF tensor {name:?} added twice"
            );
            ensure!(
                !dims.is_empty() && dims.len() <= MAX_DIMS as usize,
                "tensor {name:?}: {} dimensions; ggml tensors have 1 to {MAX_DIMS}",
                dims.len()
            );
            let n = tensor_nbytes(name, dims, *ty)?;
            ensure!(
                n == data.len() as u64,
                "tensor {name:?}: {} bytes of data, but dims {dims:?} of {} take {n}",
                data.len(),
                type_name(*ty)
            );
            put_str(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + n).next_multiple_of(alignment);
        }
        let data_start = (out.len() as u64).next_multiple_of(alignment);
        out.resize(data_start as usize, 0);
        for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
            debug_assert_eq!(out.len() as u64, data_start + off);
            out.extend_from_slice(data);
            let padded = (out.len() as u64).next_multiple_of(alignment);
            out.resize(padded as usize, 0);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small good file: a few key/values of every kind and two tensors (F32 [3, 2] named `a`,
    /// Q8_0 [32, 2] named `b`).
    fn good() -> Vec<u8> {
        let mut w = Writer::new();
        w.kv("general.architecture", Value::Str("gpt2".into()));
        w.kv("general.alignment", Value::U32(32));
        w.kv("x.u8", Value::U8(7));
        w.kv("x.i8", Value::I8(-7));
        w.kv("x.u16", Value::U16(700));
        w.kv("x.i16", Value::I16(-700));
        w.kv("x.i32", Value::I32(-70000));
        w.kv("x.f32", Value::F32(1e-5));
        w.kv("x.bool", Value::Bool(true));
        w.kv("x.u64", Value::U64(1 << 40));
        w.kv("x.i64", Value::I64(-(1 << 40)));
        w.kv("x.f64", Value::F64(0.25));
        w.kv(
            "x.strs",
            Value::Array(vec![Value::Str("a".into()), Value::Str("b c".into())]),
        );
        w.kv(
            "x.nested",
            Value::Array(vec![Value::Array(vec![Value::I32(1), Value::I32(2)])]),
        );
        let a: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        w.tensor("a", &[3, 2], GGML_TYPE_F32, a);
        let b: Vec<u8> = (0..68).map(|i| i as u8).collect();
        w.tensor("b", &[32, 2], GGML_TYPE_Q8_0, b);
        w.finish().unwrap()
    }

    /// Byte position of the tensor info of `name` (just after its name).
    fn info_of(f: &[u8], name: &str) -> usize {
        let mut pat = (name.len() as u64).to_le_bytes().to_vec();
        pat.extend_from_slice(name.as_bytes());
        pat.extend_from_slice(&2u32.to_le_bytes());
        f.windows(pat.len()).position(|w| w == pat).unwrap() + pat.len() - 4
    }
    // Offsets within a tensor info after its name: n_dims 0, dims 4.., then type, offset.
    fn type_at(f: &[u8], name: &str) -> usize {
        info_of(f, name) + 4 + 16
    }
    fn offset_at(f: &[u8], name: &str) -> usize {
        type_at(f, name) + 4
    }

    fn refusal(f: &[u8]) -> String {
        format!("{:#}", read(f).unwrap_err())
    }

    fn assert_refused(f: &[u8], words: &[&str]) {
        let e = refusal(f);
        for w in words {
            assert!(e.contains(w), "{e:?} should contain {w:?}");
        }
    }

    #[test]
    fn a_written_file_reads_back_with_every_key_and_tensor_and_rewrites_to_the_same_bytes() {
        let f = good();
        let g = read(&f).unwrap();
        assert_eq!(g.data_start % 32, 0);
        assert_eq!(g.get("x.f32"), Some(&Value::F32(1e-5)));
        assert_eq!(g.get("x.i64"), Some(&Value::I64(-(1 << 40))));
        assert_eq!(
            g.get("general.architecture").unwrap().as_str(),
            Some("gpt2")
        );
        assert_eq!(g.tensors.len(), 2);
        assert_eq!(g.tensors[1].offset, 32);
        assert_eq!(g.tensor_data(&f, "a").unwrap()[4..8], 1f32.to_le_bytes());
        assert_eq!(g.tensor_data(&f, "b").unwrap().len(), 68);
        assert!(g.tensor_data(&f, "c").is_err());
        let mut w = Writer::new();
        for (k, v) in &g.kv {
            w.kv(k, v.clone());
        }
        for t in &g.tensors {
            w.tensor(
                &t.name,
                &t.dims,
                t.ggml_type,
                g.tensor_data(&f, &t.name).unwrap().to_vec(),
            );
        }
        assert_eq!(w.finish().unwrap(), f);
        assert_eq!(f.len() % 32, 0);
    }

    #[test]
    fn a_wrong_magic_is_refused_at_byte_0() {
        let mut f = good();
        f[0] = b'X';
        assert_refused(&f, &["not a GGUF file", "byte 0"]);
    }

    #[test]
    fn an_unknown_version_is_refused_at_byte_4() {
        let mut f = good();
        f[4] = 2;
        assert_refused(&f, &["version 2", "byte 4"]);
    }

    #[test]
    fn a_truncated_header_is_refused_naming_the_offset() {
        let f = good();
        assert_refused(&f[..10], &["truncated in the header", "byte 8"]);
    }

    #[test]
    fn a_truncated_key_value_is_refused_naming_the_offset() {
        let f = good();
        assert_refused(&f[..40], &["truncated in key/value", "byte "]);
    }

    #[test]
    fn a_truncated_tensor_info_is_refused_naming_the_offset() {
        let f = good();
        let cut = offset_at(&f, "b") + 3;
        assert_refused(
            &f[..cut],
            &["truncated in tensor info 1", &format!("byte {}", cut - 3)],
        );
    }

    #[test]
    fn truncated_tensor_data_is_refused_naming_the_offset() {
        let f = good();
        let g = read(&f).unwrap();
        let cut = (g.data_start + 32 + 10) as usize;
        assert_refused(
            &f[..cut],
            &["truncated in the data of tensor \"b\"", "byte "],
        );
    }

    #[test]
    fn an_unknown_tensor_type_is_refused_naming_the_offset() {
        let mut f = good();
        let at = type_at(&f, "a");
        f[at] = 99;
        assert_refused(&f, &["unknown tensor type 99", &format!("byte {at}")]);
    }

    #[test]
    fn an_unknown_value_type_is_refused_naming_the_offset() {
        let mut f = good();
        // The first key/value's type follows its key at byte 24 + 8 + len.
        let at = 24 + 8 + "general.architecture".len();
        assert_eq!(f[at], 8);
        f[at] = 13;
        assert_refused(&f, &["unknown value type 13", &format!("byte {at}")]);
    }

    #[test]
    fn a_misaligned_offset_is_refused_naming_the_offset() {
        let mut f = good();
        let at = offset_at(&f, "b");
        f[at] = 4;
        assert_refused(
            &f,
            &["not a multiple of the alignment 32", &format!("byte {at}")],
        );
    }

    #[test]
    fn overlapping_tensors_are_refused_naming_the_offset() {
        let mut f = good();
        let at = offset_at(&f, "b");
        f[at] = 0;
        assert_refused(&f, &["overlap", &format!("byte {at}")]);
    }

    #[test]
    fn a_tensor_count_that_does_not_match_the_file_is_refused() {
        let mut f = good();
        f[8] = 1;
        assert_refused(&f, &["tensor count 1", "byte 8", "does not match"]);
        let mut f = good();
        f[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_refused(&f, &["tensor info 2 of 18446744073709551615", "byte "]);
    }

    #[test]
    fn duplicate_tensor_names_are_refused_naming_the_offset() {
        let mut f = good();
        let at = info_of(&f, "b") - 1;
        f[at] = b'a';
        assert_refused(&f, &["\"a\"", "appears twice", &format!("byte {}", at - 8)]);
    }

    #[test]
    fn dims_whose_byte_size_overflows_are_refused_naming_the_offset() {
        let mut f = good();
        let at = info_of(&f, "a") + 4 + 8;
        f[at..at + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        assert_refused(&f, &["overflow", &format!("dims at byte {}", at - 8)]);
    }

    #[test]
    fn a_first_dimension_not_a_multiple_of_the_block_size_is_refused() {
        let mut f = good();
        let at = info_of(&f, "b") + 4;
        f[at] = 33;
        assert_refused(
            &f,
            &[
                "33 is not a multiple of the Q8_0 block size 32",
                &format!("byte {}", at),
            ],
        );
    }

    #[test]
    fn the_writer_refuses_mismatched_data_duplicates_and_mixed_arrays() {
        let mut w = Writer::new();
        w.tensor("a", &[3], GGML_TYPE_F32, vec![0; 8]);
        assert!(format!("{:#}", w.finish().unwrap_err()).contains("8 bytes of data"));
        let mut w = Writer::new();
        w.tensor("a", &[1], GGML_TYPE_F32, vec![0; 4]);
        w.tensor("a", &[1], GGML_TYPE_F32, vec![0; 4]);
        assert!(w.finish().is_err());
        let mut w = Writer::new();
        w.kv("k", Value::Array(vec![Value::U8(1), Value::I8(1)]));
        assert!(format!("{:#}", w.finish().unwrap_err()).contains("homogeneous"));
    }

    #[test]
    fn random_corruption_never_panics() {
        let f = good();
        let mut s = 0x9e3779b97f4a7c15u64;
        for _ in 0..3000 {
            let mut g = f.clone();
            for _ in 0..3 {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let i = (s >> 33) as usize % g.len();
                g[i] = (s >> 13) as u8;
            }
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            let cut = (s >> 33) as usize % (g.len() + 1);
            let _ = read(&g);
            let _ = read(&g[..cut]);
        }
    }
}
