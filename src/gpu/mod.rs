//! GPU runtime (wgpu): device, buffers, kernels.
//!
//! One [`Gpu`] (one wgpu device) per process. Tensors are storage buffers with a shape; kernels
//! are WGSL entry points from `shaders/*.wgsl`, compiled lazily and cached. Work is recorded into
//! a [`Batch`] (one command encoder, many dispatches) and submitted at once; only what the host
//! needs is read back.
//!
//! Every kernel has a plain-Rust reference in [`reference`] with the same shapes, and both sit
//! behind the [`ops::Ops`] trait so model code does not know which one runs.

pub mod bench;
pub mod doctor;
pub mod kernels;
pub mod ops;
pub mod quant;
pub mod reference;
pub mod shaders;

use anyhow::{Context, Result, anyhow, bail, ensure};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// How to get an adapter when there is none (printed by errors and `pai doctor`).
pub const NO_ADAPTER_HELP: &str = "no wgpu adapter found. pai needs a Vulkan (or Metal/DX12/GL) \
driver; on a machine without a GPU, Mesa's software Vulkan driver (lavapipe) works: on \
Debian/Ubuntu run `sudo apt-get install mesa-vulkan-drivers` (Fedora: `sudo dnf install \
mesa-vulkan-drivers`; Arch: `sudo pacman -S vulkan-swrast`), then run `pai doctor` again";

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

/// A buffer on the device plus its logical shape (row-major, last dimension contiguous).
#[derive(Clone, Debug)]
pub struct Tensor {
    pub buffer: wgpu::Buffer,
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
    /// Rows and columns when viewed as a matrix: all leading dimensions times the last.
    pub fn as_2d(&self) -> (usize, usize) {
        match self.shape.split_last() {
            None => (1, 1),
            Some((last, rest)) => (rest.iter().product(), *last),
        }
    }
}

/// Storage access of one binding of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadWrite,
}

/// A kernel: one entry point of one shader family, with its storage bindings (binding 0 is
/// always the uniform parameter block; storage bindings are 1..=n in this order).
#[derive(Debug)]
pub struct Kernel {
    pub family: &'static str,
    pub entry: &'static str,
    pub bindings: &'static [Access],
    /// Invocations per workgroup (as declared in the shader); used to size dispatches.
    pub workgroup: u32,
}

struct Compiled {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// The process's wgpu device.
pub struct Gpu {
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<(&'static str, &'static str), Arc<Compiled>>>,
    dummy: Tensor,
    dispatched: Mutex<std::collections::BTreeSet<String>>,
}

/// Parameters of a dispatch, as 32-bit words in the order of the shader's `Params` struct.
#[derive(Default, Clone, Debug)]
pub struct Params(Vec<u32>);

impl Params {
    pub fn new() -> Self {
        Self(Vec::new())
    }
    pub fn u(mut self, v: usize) -> Self {
        // Every size passed here is bounded by a buffer the adapter accepted
        // (at most max_buffer_size bytes); saturate rather than panic anyway,
        // and let the host-side binding checks refuse the dispatch.
        self.0.push(u32::try_from(v).unwrap_or(u32::MAX));
        self
    }
    pub fn f(mut self, v: f32) -> Self {
        self.0.push(v.to_bits());
        self
    }
    pub fn b(self, v: bool) -> Self {
        self.u(v as usize)
    }
    fn bytes(&self) -> Vec<u8> {
        let mut words = self.0.clone();
        // Uniform blocks are sized in 16-byte units; never empty.
        while words.is_empty() || !words.len().is_multiple_of(4) {
            words.push(0);
        }
        bytemuck::cast_slice(&words).to_vec()
    }
}

pub(crate) fn backend_rank(b: wgpu::Backend) -> u32 {
    match b {
        wgpu::Backend::Vulkan => 0,
        wgpu::Backend::Metal | wgpu::Backend::Dx12 => 1,
        wgpu::Backend::Gl => 3,
        _ => 4,
    }
}

pub(crate) fn type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

pub(crate) fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::all() - wgpu::Backends::BROWSER_WEBGPU;
    wgpu::Instance::new(desc)
}

/// The adapter preference in effect: the argument, else `PAI_ADAPTER`.
pub fn adapter_preference(adapter_pref: Option<&str>) -> Option<String> {
    adapter_pref
        .map(str::to_string)
        .or_else(|| std::env::var("PAI_ADAPTER").ok())
        .filter(|s| !s.trim().is_empty())
}

/// Picks the adapter pai uses from a list: by name substring (case-insensitive) if a preference
/// is given, else the best by device type (discrete, integrated, virtual, CPU), then backend
/// (Vulkan first). Returns the index into `adapters`.
pub(crate) fn choose(infos: &[wgpu::AdapterInfo], pref: Option<&str>) -> Result<usize> {
    if infos.is_empty() {
        bail!("{NO_ADAPTER_HELP}");
    }
    let mut order: Vec<usize> = (0..infos.len()).collect();
    order.sort_by_key(|&i| {
        (
            type_rank(infos[i].device_type),
            backend_rank(infos[i].backend),
        )
    });
    if let Some(p) = pref {
        let p = p.to_lowercase();
        order
            .into_iter()
            .find(|&i| {
                infos[i].name.to_lowercase().contains(&p)
                    || format!("{:?}", infos[i].backend).to_lowercase() == p
            })
            .ok_or_else(|| {
                let names: Vec<String> = infos
                    .iter()
                    .map(|a| format!("{} ({:?})", a.name, a.backend))
                    .collect();
                anyhow!(
                    "no adapter matches {p:?} (from --adapter or PAI_ADAPTER); available: {}",
                    names.join(", ")
                )
            })
    } else {
        Ok(order[0])
    }
}

impl Gpu {
    /// Opens the device: the adapter named (substring) by `adapter_pref` or env `PAI_ADAPTER`,
    /// else the best discrete/integrated GPU, else a CPU adapter (lavapipe); Vulkan preferred.
    pub fn new(adapter_pref: Option<&str>) -> Result<Gpu> {
        let pref = adapter_preference(adapter_pref);
        let instance = instance();
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(|a| a.get_info()).collect();
        let idx = choose(&infos, pref.as_deref())?;
        let adapter = adapters[idx].clone();
        let info = infos[idx].clone();
        let limits = adapter.limits();
        let features = adapter.features() & wgpu::Features::SUBGROUP;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("pai"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .with_context(|| {
            format!(
                "opening device on adapter {} ({:?})",
                info.name, info.backend
            )
        })?;
        let dummy_buf = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dummy"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Gpu {
            adapter,
            device,
            queue,
            info,
            limits,
            features,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            dispatched: Mutex::new(Default::default()),
            dummy: Tensor {
                buffer: dummy_buf,
                shape: vec![4],
                dtype: DType::F32,
            },
        })
    }

    /// A one-line description of the adapter in use.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}, {} {})",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver,
            self.info.driver_info
        )
    }

    /// True when the adapter is a CPU implementation (lavapipe, llvmpipe, WARP...).
    pub fn is_cpu(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// A 16-byte tensor to bind where a kernel's optional input is absent.
    pub fn dummy(&self) -> &Tensor {
        &self.dummy
    }

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
            shape: shape.to_vec(),
            dtype,
        })
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
            .write_buffer(&t.buffer, 0, bytemuck::cast_slice(data));
        Ok(())
    }

    /// Fills a tensor with NaN (f32 bits 0x7fc00000): tests poison outputs so that an element a
    /// kernel fails to write shows up.
    pub fn poison(&self, t: &Tensor) {
        let words = t.buffer.size() as usize / 4;
        self.queue.write_buffer(
            &t.buffer,
            0,
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
            let size = t.buffer.size();
            let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            enc.copy_buffer_to_buffer(&t.buffer, 0, &staging, 0, size);
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

    /// Waits until all submitted work is done.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| anyhow!("waiting for the GPU: {e}"))?;
        Ok(())
    }

    /// Starts a batch: one command encoder that many dispatches go into.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            gpu: self,
            encoder: Some(self.device.create_command_encoder(&Default::default())),
            dispatches: 0,
        }
    }

    fn module(&self, family: &'static str) -> Result<wgpu::ShaderModule> {
        let mut modules = self.modules.lock().unwrap();
        if let Some(m) = modules.get(family) {
            return Ok(m.clone());
        }
        let src = shaders::source(family)
            .ok_or_else(|| anyhow!("no shader family {family:?} in shaders/"))?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let m = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(family),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!("shader {family}.wgsl does not compile: {e}");
        }
        modules.insert(family, m.clone());
        Ok(m)
    }

    fn compiled(&self, k: &Kernel) -> Result<Arc<Compiled>> {
        if let Some(c) = self.pipelines.lock().unwrap().get(&(k.family, k.entry)) {
            return Ok(c.clone());
        }
        let module = self.module(k.family)?;
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }];
        for (i, a) in k.bindings.iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: *a == Access::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        ensure!(
            k.bindings.len() as u32 <= self.limits.max_storage_buffers_per_shader_stage,
            "kernel {}::{} needs {} storage buffers; this adapter allows {}",
            k.family,
            k.entry,
            k.bindings.len(),
            self.limits.max_storage_buffers_per_shader_stage
        );
        ensure!(
            k.workgroup <= self.limits.max_compute_invocations_per_workgroup,
            "kernel {}::{} uses {} invocations per workgroup; this adapter allows {}",
            k.family,
            k.entry,
            k.workgroup,
            self.limits.max_compute_invocations_per_workgroup
        );
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(k.entry),
                entries: &entries,
            });
        let pl = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(k.entry),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(k.entry),
                layout: Some(&pl),
                module: &module,
                entry_point: Some(k.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[],
                    // Every kernel writes what it reads from workgroup memory first; zeroing
                    // costs lavapipe/llvmpipe dearly.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!("building kernel {}::{}: {e}", k.family, k.entry);
        }
        let c = Arc::new(Compiled { pipeline, layout });
        self.pipelines
            .lock()
            .unwrap()
            .insert((k.family, k.entry), c.clone());
        Ok(c)
    }

    /// The kernels dispatched since the last call ("family::entry"), clearing the set.
    pub fn take_dispatched(&self) -> std::collections::BTreeSet<String> {
        std::mem::take(&mut *self.dispatched.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Compiles a kernel now (benchmarks warm up this way).
    pub fn prepare(&self, k: &Kernel) -> Result<()> {
        self.compiled(k).map(|_| ())
    }

    /// Splits a count of workgroups over x and y so no dimension exceeds the adapter's
    /// `max_compute_workgroups_per_dimension`. Kernels linearise `wg.x + wg.y * nwg.x` and skip
    /// ids beyond their work.
    pub fn grid(&self, workgroups: usize) -> Result<(u32, u32)> {
        let max = self.limits.max_compute_workgroups_per_dimension as usize;
        if workgroups <= max {
            return Ok((workgroups as u32, 1));
        }
        let y = workgroups.div_ceil(max);
        ensure!(
            y <= max,
            "{workgroups} workgroups exceed this adapter's {max}x{max} dispatch grid"
        );
        Ok((max as u32, y as u32))
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

/// One command encoder collecting many dispatches; submitted once by [`Batch::submit`] or
/// [`Batch::run`]. A batch dropped without submitting is discarded.
pub struct Batch<'g> {
    pub gpu: &'g Gpu,
    encoder: Option<wgpu::CommandEncoder>,
    dispatches: usize,
}

impl Batch<'_> {
    /// Records a dispatch of `invocations` total invocations (rounded up to whole workgroups)
    /// of kernel `k` with the given parameters and storage buffers. Checks binding counts and
    /// sizes against the kernel and the adapter's limits first.
    pub fn dispatch(
        &mut self,
        k: &Kernel,
        params: &Params,
        buffers: &[&Tensor],
        invocations: usize,
    ) -> Result<()> {
        ensure!(
            buffers.len() == k.bindings.len(),
            "kernel {}::{} takes {} buffers, got {}",
            k.family,
            k.entry,
            k.bindings.len(),
            buffers.len()
        );
        let max_bind = self.gpu.limits.max_storage_buffer_binding_size;
        for (i, b) in buffers.iter().enumerate() {
            ensure!(
                b.buffer.size() <= max_bind,
                "kernel {}::{}: buffer {} of shape {:?} is {} bytes, over this adapter's \
                 max_storage_buffer_binding_size {max_bind}; split the work",
                k.family,
                k.entry,
                i + 1,
                b.shape,
                b.buffer.size()
            );
        }
        if invocations == 0 {
            return Ok(());
        }
        let c = self.gpu.compiled(k)?;
        self.gpu
            .dispatched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(format!("{}::{}", k.family, k.entry));
        let (x, y) = self.gpu.grid(invocations.div_ceil(k.workgroup as usize))?;
        let ubuf = self
            .gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: &params.bytes(),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: ubuf.as_entire_binding(),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.buffer.as_entire_binding(),
            });
        }
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
        Ok(())
    }

    /// Records a buffer-to-buffer copy of a whole tensor.
    pub fn copy(&mut self, src: &Tensor, dst: &Tensor) -> Result<()> {
        ensure!(
            src.bytes() == dst.bytes(),
            "copy: source {:?} and destination {:?} differ in size",
            src.shape,
            dst.shape
        );
        let size = src.buffer.size().min(dst.buffer.size());
        self.encoder
            .as_mut()
            .unwrap()
            .copy_buffer_to_buffer(&src.buffer, 0, &dst.buffer, 0, size);
        Ok(())
    }

    /// Records zero-filling a tensor.
    pub fn zero(&mut self, t: &Tensor) {
        self.encoder
            .as_mut()
            .unwrap()
            .clear_buffer(&t.buffer, 0, None);
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

#[cfg(test)]
mod tests {
    use super::*;
    use wgpu::{AdapterInfo, Backend, DeviceType};

    fn info(name: &str, t: DeviceType, b: Backend) -> AdapterInfo {
        let mut i = AdapterInfo::new(t, b);
        i.name = name.to_string();
        i
    }

    #[test]
    fn adapter_choice_prefers_gpus_then_vulkan_and_honours_names() {
        let list = vec![
            info("llvmpipe (LLVM 19)", DeviceType::Cpu, Backend::Gl),
            info("llvmpipe (LLVM 19)", DeviceType::Cpu, Backend::Vulkan),
            info(
                "Intel(R) Graphics",
                DeviceType::IntegratedGpu,
                Backend::Vulkan,
            ),
            info("NVIDIA RTX", DeviceType::DiscreteGpu, Backend::Gl),
            info("NVIDIA RTX", DeviceType::DiscreteGpu, Backend::Vulkan),
        ];
        assert_eq!(choose(&list, None).unwrap(), 4);
        assert_eq!(choose(&list[..3], None).unwrap(), 2);
        assert_eq!(
            choose(&list[..2], None).unwrap(),
            1,
            "lavapipe over llvmpipe GL"
        );
        assert_eq!(choose(&list, Some("llvmpipe")).unwrap(), 1);
        assert_eq!(choose(&list, Some("INTEL")).unwrap(), 2);
        assert_eq!(
            choose(&list, Some("gl")).unwrap(),
            3,
            "a backend name picks that backend"
        );
        let e = choose(&list, Some("radeon")).unwrap_err().to_string();
        assert!(e.contains("radeon") && e.contains("NVIDIA RTX"), "{e}");
        let e = choose(&[], None).unwrap_err().to_string();
        assert!(e.contains("mesa-vulkan-drivers"), "{e}");
    }

    #[test]
    fn params_pad_to_16_bytes() {
        assert_eq!(Params::new().bytes().len(), 16);
        assert_eq!(Params::new().u(1).u(2).u(3).u(4).u(5).bytes().len(), 32);
        let b = Params::new().f(1.5).bytes();
        assert_eq!(&b[..4], &1.5f32.to_bits().to_le_bytes());
    }
}
