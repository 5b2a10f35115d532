//! Batched dispatch: a [`Batch`] is one command encoder that many kernel dispatches go into,
//! submitted at once. A dispatch names its buffers by the WGSL variable they bind to; the names
//! the entry point uses are checked against the ones given, so a kernel gets exactly the
//! buffers it uses, in the layout wgpu derived from it.

use super::{Gpu, Kernel, KernelPath, Tensor};
use anyhow::{Result, bail, ensure};
use wgpu::util::DeviceExt;

/// One command encoder collecting many dispatches; submitted once by [`Batch::submit`] or
/// [`Batch::run`]. A batch dropped without submitting is discarded.
pub struct Batch<'g> {
    pub gpu: &'g Gpu,
    encoder: Option<wgpu::CommandEncoder>,
    dispatches: usize,
    /// The generation of kernels the ops recorded into this batch dispatch: the device's [`Gpu::path`] when the batch starts, or [`Batch::set_path`]'s.
    path: KernelPath,
}

impl Gpu {
    /// Starts a batch: one command encoder that many dispatches go into.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            gpu: self,
            encoder: Some(self.device.create_command_encoder(&Default::default())),
            dispatches: 0,
            path: self.path(),
        }
    }
}

impl Batch<'_> {
    /// Which kernel path the ops recorded into this batch from now on take (for this batch
    /// only: tests and benchmarks compare paths without touching the shared device's).
    pub fn set_path(&mut self, path: KernelPath) {
        self.path = path;
    }

    /// The kernel path of this batch (see [`Batch::set_path`]).
    pub fn path(&self) -> KernelPath {
        self.path
    }

    /// Records a dispatch of `invocations` total invocations (rounded up to whole workgroups of
    /// the size the entry point declares) of kernel `k`, with `params` as its uniform block and
    /// `buffers` bound to the storage variables of those names. Checks the parameter struct's
    /// size, the names against the bindings the entry point uses, and buffer sizes against the
    /// adapter's limits first.
    pub fn dispatch<P: bytemuck::Pod>(
        &mut self,
        k: &Kernel,
        params: &P,
        buffers: &[(&str, &Tensor)],
        invocations: usize,
    ) -> Result<()> {
        ensure!(
            std::mem::size_of::<P>() == k.params,
            "kernel {}: parameters of {} bytes, the kernel's struct has {}",
            k.name(),
            std::mem::size_of::<P>(),
            k.params
        );
        let max_bind = self.gpu.limits.max_storage_buffer_binding_size;
        for (name, b) in buffers {
            ensure!(
                b.size <= max_bind,
                "kernel {}: buffer {name} of shape {:?} is {} bytes, over this adapter's \
                 max_storage_buffer_binding_size {max_bind}; split the work",
                k.name(),
                b.shape,
                b.size
            );
        }
        if invocations == 0 {
            return Ok(());
        }
        let c = self.gpu.compiled(k)?;
        let profiling = self.gpu.profile.on();
        if profiling {
            // What was recorded before is not this kernel's time.
            self.flush_and_wait()?;
        }
        let used = &c.reflection.storage;
        let mut entries = Vec::with_capacity(used.len() + 1);
        let ubuf;
        if c.reflection.uniform.is_some() {
            ubuf = self
                .gpu
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("params"),
                    contents: bytemuck::bytes_of(params),
                    usage: wgpu::BufferUsages::UNIFORM,
                });
            entries.push(wgpu::BindGroupEntry {
                binding: 0,
                resource: ubuf.as_entire_binding(),
            });
        }
        for (binding, name) in used {
            let Some((_, t)) = buffers.iter().find(|(n, _)| n == name) else {
                bail!("kernel {}: no buffer given for `{name}`", k.name());
            };
            entries.push(wgpu::BindGroupEntry {
                binding: *binding,
                resource: t.binding(),
            });
        }
        if let Some((n, _)) = buffers
            .iter()
            .find(|(n, _)| !used.iter().any(|(_, u)| u == n))
        {
            bail!("kernel {} does not use a buffer `{n}`", k.name());
        }
        let (x, y) = self
            .gpu
            .grid(invocations.div_ceil(c.reflection.workgroup as usize))?;
        let bg = self
            .gpu
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(k.entry),
                layout: &c.layout,
                entries: &entries,
            });
        let enc = self.encoder.as_mut().unwrap();
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(k.entry),
            timestamp_writes: None,
        });
        pass.set_pipeline(&c.pipeline);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(x, y, 1);
        drop(pass);
        self.dispatches += 1;
        self.gpu.record_dispatch(k);
        if profiling {
            let t = std::time::Instant::now();
            self.flush_and_wait()?;
            self.gpu.profile.add(k, t.elapsed());
        }
        Ok(())
    }

    /// Submits what is recorded, waits for it, and goes on in a new encoder.
    fn flush_and_wait(&mut self) -> Result<()> {
        let enc = self.encoder.take().unwrap();
        self.gpu.queue.submit([enc.finish()]);
        self.encoder = Some(self.gpu.device.create_command_encoder(&Default::default()));
        self.gpu.wait()
    }

    /// Records a buffer-to-buffer copy of a whole tensor.
    pub fn copy(&mut self, src: &Tensor, dst: &Tensor) -> Result<()> {
        ensure!(
            src.bytes() == dst.bytes(),
            "copy: source {:?} and destination {:?} differ in size",
            src.shape,
            dst.shape
        );
        let size = src.size.min(dst.size);
        self.encoder.as_mut().unwrap().copy_buffer_to_buffer(
            &src.buffer,
            src.offset,
            &dst.buffer,
            dst.offset,
            size,
        );
        Ok(())
    }

    /// Records a copy of `len` elements of `src` from element `src_at` into `dst` at element
    /// `dst_at` (both 4-byte element tensors; the ranges are checked against the shapes).
    pub fn copy_range(
        &mut self,
        src: &Tensor,
        src_at: usize,
        dst: &Tensor,
        dst_at: usize,
        len: usize,
    ) -> Result<()> {
        ensure!(
            src.dtype.size() == 4 && dst.dtype == src.dtype,
            "copy_range: tensors must both hold 4-byte elements of one type ({:?}, {:?})",
            src.dtype,
            dst.dtype
        );
        ensure!(
            src_at + len <= src.len() && dst_at + len <= dst.len(),
            "copy_range: {len} elements from {src_at} of {:?} into {dst_at} of {:?} run past an end",
            src.shape,
            dst.shape
        );
        if len == 0 {
            return Ok(());
        }
        self.encoder.as_mut().unwrap().copy_buffer_to_buffer(
            &src.buffer,
            src.offset + (src_at * 4) as u64,
            &dst.buffer,
            dst.offset + (dst_at * 4) as u64,
            (len * 4) as u64,
        );
        Ok(())
    }

    /// Records zero-filling a tensor.
    pub fn zero(&mut self, t: &Tensor) {
        self.encoder
            .as_mut()
            .unwrap()
            .clear_buffer(&t.buffer, t.offset, Some(t.size));
    }

    /// Number of dispatches recorded so far.
    pub fn len(&self) -> usize {
        self.dispatches
    }
    pub fn is_empty(&self) -> bool {
        self.dispatches == 0
    }

    /// Submits everything recorded (does not wait). Validation errors come back as errors.
    pub fn submit(mut self) -> Result<wgpu::SubmissionIndex> {
        let enc = self.encoder.take().unwrap();
        let scope = self
            .gpu
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let cb = enc.finish();
        let idx = self.gpu.queue.submit([cb]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!("GPU batch of {} dispatches rejected: {e}", self.dispatches);
        }
        Ok(idx)
    }

    /// Submits and waits for completion.
    pub fn run(self) -> Result<()> {
        let gpu = self.gpu;
        self.submit()?;
        gpu.wait()
    }
}
