//! Tensors: a storage buffer on the device with a logical shape and element type; allocation,
//! upload and readback.

use super::Gpu;
use anyhow::{Context, Result, anyhow, ensure};
use wgpu::util::DeviceExt;

/// Element type of a tensor's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    U32,
    /// Raw bytes (quantized blocks); stored padded to a multiple of 4.
    U8,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::U8 => 1,
        }
    }
}

/// A buffer on the device, or a view into part of one (parameters, gradients and AdamW
/// moments live in blocks so the optimizer can sweep them in a few dispatches), plus its
/// logical shape (row-major, last dimension contiguous).
#[derive(Clone, Debug)]
pub struct Tensor {
    pub buffer: wgpu::Buffer,
    /// Where the tensor starts in the buffer, in bytes (0 unless a view).
    pub offset: u64,
    /// The bytes bound for it (its size rounded up to 4; the whole buffer unless a view).
    pub size: u64,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl Tensor {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Logical size in bytes.
    pub fn bytes(&self) -> usize {
        self.len() * self.dtype.size()
    }
    /// The part of this tensor from element `at` holding `shape` (4-byte element types).
    /// Dispatches bind it at its offset, so `at` must keep the offset a multiple of the
    /// adapter's `min_storage_buffer_offset_alignment` (see [`Gpu::zeros_block`]).
    pub fn view(&self, at: usize, shape: &[usize]) -> Result<Tensor> {
        ensure!(
            self.dtype.size() == 4,
            "view: only 4-byte element tensors have views"
        );
        let n: usize = shape.iter().product();
        ensure!(
            at + n <= self.len(),
            "view of {shape:?} at element {at} runs past the end of {:?}",
            self.shape
        );
        Ok(Tensor {
            buffer: self.buffer.clone(),
            offset: self.offset + (at * 4) as u64,
            size: (n.max(1) * 4) as u64,
            shape: shape.to_vec(),
            dtype: self.dtype,
        })
    }

    /// What a dispatch binds: the tensor's range of its buffer.
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: std::num::NonZeroU64::new(self.size),
        })
    }

    /// True when the two tensors share bytes of one buffer.
    pub fn overlaps(&self, o: &Tensor) -> bool {
        self.buffer == o.buffer
            && self.offset < o.offset + o.size
            && o.offset < self.offset + self.size
    }

    /// Rows and columns when viewed as a matrix: all leading dimensions times the last.
    pub fn as_2d(&self) -> (usize, usize) {
        match self.shape.split_last() {
            None => (1, 1),
            Some((last, rest)) => (rest.iter().product(), *last),
        }
    }
}

impl Gpu {
    fn alloc(&self, shape: &[usize], dtype: DType, contents: Option<&[u8]>) -> Result<Tensor> {
        let bytes = shape
            .iter()
            .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
            .with_context(|| format!("tensor of shape {shape:?} is too large to address"))?;
        let size = (bytes.max(4).div_ceil(4) * 4) as u64;
        ensure!(
            size <= self.limits.max_buffer_size,
            "tensor of shape {shape:?} needs {size} bytes, more than this adapter's max_buffer_size {}",
            self.limits.max_buffer_size
        );
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let buffer = match contents {
            Some(c) => {
                let mut padded;
                let c = if c.len() as u64 == size {
                    c
                } else {
                    padded = c.to_vec();
                    padded.resize(size as usize, 0);
                    &padded[..]
                };
                self.device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: None,
                        contents: c,
                        usage,
                    })
            }
            None => self.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage,
                mapped_at_creation: false,
            }),
        };
        Ok(Tensor {
            buffer,
            offset: 0,
            size,
            shape: shape.to_vec(),
            dtype,
        })
    }

    /// Zero f32 tensors of the given shapes as views into one new buffer, each starting at a
    /// multiple of the adapter's storage offset alignment (the gaps stay zero). Returns the
    /// whole block and the views.
    pub fn zeros_block(&self, shapes: &[&[usize]]) -> Result<(Tensor, Vec<Tensor>)> {
        let align = (self.limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
        let mut at = Vec::with_capacity(shapes.len());
        let mut end = 0usize;
        for s in shapes {
            let start = end.div_ceil(align) * align;
            at.push(start);
            end = start + s.iter().product::<usize>();
        }
        let whole = self.zeros(&[end.max(1)])?;
        let views = shapes
            .iter()
            .zip(at)
            .map(|(s, a)| whole.view(a, s))
            .collect::<Result<Vec<_>>>()?;
        Ok((whole, views))
    }

    /// A new tensor, zero-filled (wgpu zero-initialises buffers).
    pub fn zeros(&self, shape: &[usize]) -> Result<Tensor> {
        self.alloc(shape, DType::F32, None)
    }

    /// A new u32 tensor, zero-filled.
    pub fn zeros_u32(&self, shape: &[usize]) -> Result<Tensor> {
        self.alloc(shape, DType::U32, None)
    }

    /// A new byte tensor, zero-filled.
    pub fn zeros_u8(&self, len: usize) -> Result<Tensor> {
        self.alloc(&[len], DType::U8, None)
    }

    /// Uploads f32 data with the given shape.
    pub fn upload(&self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        check_len(data.len(), shape)?;
        self.alloc(shape, DType::F32, Some(bytemuck::cast_slice(data)))
    }

    /// Uploads u32 data (token ids, indices) with the given shape.
    pub fn upload_u32(&self, data: &[u32], shape: &[usize]) -> Result<Tensor> {
        check_len(data.len(), shape)?;
        self.alloc(shape, DType::U32, Some(bytemuck::cast_slice(data)))
    }

    /// Uploads raw bytes.
    pub fn upload_u8(&self, data: &[u8]) -> Result<Tensor> {
        self.alloc(&[data.len()], DType::U8, Some(data))
    }

    /// Overwrites a tensor's contents from the host.
    pub fn write(&self, t: &Tensor, data: &[f32]) -> Result<()> {
        ensure!(
            t.dtype == DType::F32,
            "write: tensor is {:?}, not f32",
            t.dtype
        );
        check_len(data.len(), &t.shape)?;
        self.queue
            .write_buffer(&t.buffer, t.offset, bytemuck::cast_slice(data));
        Ok(())
    }

    /// Fills a tensor with NaN (f32 bits 0x7fc00000): tests poison outputs so that an element a
    /// kernel fails to write shows up.
    pub fn poison(&self, t: &Tensor) {
        let words = t.size as usize / 4;
        self.queue.write_buffer(
            &t.buffer,
            t.offset,
            bytemuck::cast_slice(&vec![0x7fc0_0000u32; words]),
        );
    }

    /// Reads a tensor's raw bytes (its logical size) back to the host. Everything submitted
    /// before runs first.
    pub fn read_bytes(&self, t: &Tensor) -> Result<Vec<u8>> {
        let mut out = self.read_many(&[t])?;
        Ok(out.pop().unwrap())
    }

    /// Reads several tensors back with one copy submission and one wait.
    pub fn read_many(&self, ts: &[&Tensor]) -> Result<Vec<Vec<u8>>> {
        let mut enc = self.device.create_command_encoder(&Default::default());
        let mut stagings = Vec::new();
        for t in ts {
            let size = t.size;
            let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            enc.copy_buffer_to_buffer(&t.buffer, t.offset, &staging, 0, size);
            stagings.push(staging);
        }
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        for (i, s) in stagings.iter().enumerate() {
            let tx = tx.clone();
            s.map_async(wgpu::MapMode::Read, .., move |r| {
                let _ = tx.send((i, r));
            });
        }
        drop(tx);
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| anyhow!("waiting for the GPU: {e}"))?;
        for (i, r) in rx.iter() {
            r.map_err(|e| anyhow!("mapping readback buffer {i}: {e}"))?;
        }
        let mut out = Vec::new();
        for (t, s) in ts.iter().zip(&stagings) {
            let view = s
                .get_mapped_range(..)
                .map_err(|e| anyhow!("reading mapped buffer: {e:?}"))?;
            out.push(view[..t.bytes()].to_vec());
            drop(view);
            s.unmap();
        }
        Ok(out)
    }

    /// Reads an f32 tensor back.
    pub fn read(&self, t: &Tensor) -> Result<Vec<f32>> {
        ensure!(
            t.dtype == DType::F32,
            "read: tensor is {:?}, not f32",
            t.dtype
        );
        Ok(bytemuck::pod_collect_to_vec(&self.read_bytes(t)?))
    }

    /// Reads a u32 tensor back.
    pub fn read_u32(&self, t: &Tensor) -> Result<Vec<u32>> {
        ensure!(
            t.dtype == DType::U32,
            "read_u32: tensor is {:?}, not u32",
            t.dtype
        );
        Ok(bytemuck::pod_collect_to_vec(&self.read_bytes(t)?))
    }
}

fn check_len(n: usize, shape: &[usize]) -> Result<()> {
    let want: usize = shape.iter().product();
    ensure!(
        n == want,
        "data has {n} elements but shape {shape:?} holds {want}"
    );
    Ok(())
}
