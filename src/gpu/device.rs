//! The device and adapter choice: one [`Gpu`] (one wgpu device) per process, opened on the
//! adapter a preference names or the best one found; also what the device records about its own
//! use (the kernels dispatched) and the matmul-variant override experiments set.

use super::Kernel;
use super::pipelines::Pipelines;
use anyhow::{Context, Result, anyhow, bail, ensure};
use std::collections::BTreeSet;
use std::sync::Mutex;

/// How to get an adapter when there is none (printed by errors and `pai doctor`).
pub const NO_ADAPTER_HELP: &str = "no wgpu adapter found. pai needs a Vulkan (or Metal/DX12/GL) \
driver; on a machine without a GPU, Mesa's software Vulkan driver (lavapipe) works: on \
Debian/Ubuntu run `sudo apt-get install mesa-vulkan-drivers` (Fedora: `sudo dnf install \
mesa-vulkan-drivers`; Arch: `sudo pacman -S vulkan-swrast`), then run `pai doctor` again";

/// Which generation of training kernels the ops dispatch. Both compute the same functions
/// (each is tested against the f64 references); `Release1` is kept so that `pai bench train`
/// can measure the current path against it in the same run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum KernelPath {
    /// The first training release: per-row attention kernels, GELU and residual adds as their
    /// own dispatches, one AdamW dispatch per parameter tensor.
    Release1,
    /// Attention through tiled products, fused epilogues, fewer dispatches (the default).
    #[default]
    Fused,
}

/// The process's wgpu device.
pub struct Gpu {
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pub(crate) pipelines: Pipelines,
    /// The matmul variant experiments force (an entry name), if any.
    forced_matmul: Mutex<Option<String>>,
    /// Which generation of training kernels runs (see [`KernelPath`]).
    path: Mutex<KernelPath>,
    /// Kernels dispatched since the last [`Gpu::take_dispatched`]: (file, entry).
    dispatched: Mutex<BTreeSet<(&'static str, &'static str)>>,
    pub(crate) profile: super::profile::Profile,
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

/// The adapter preference in effect: the argument, unless empty.
pub fn adapter_preference(adapter_pref: Option<&str>) -> Option<String> {
    adapter_pref
        .map(str::to_string)
        .filter(|s| !s.trim().is_empty())
}

/// Picks the adapter pai uses from a list: by name substring (case-insensitive) if a preference
/// is given (`cpu`, the native adapter's reserved name, is refused: it is no wgpu adapter), else the best by device type (discrete, integrated, virtual, CPU), then backend
/// (Vulkan first). Returns the index into `adapters`.
pub(crate) fn choose(infos: &[wgpu::AdapterInfo], pref: Option<&str>) -> Result<usize> {
    if super::native::is_native(pref) {
        bail!(
            "{:?} names pai's native CPU adapter, which runs without wgpu; the step or command \
             asked for a wgpu adapter",
            super::native::NAME
        );
    }
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
    /// Opens the device: the adapter named (substring) by `adapter_pref` (an empty name counts
    /// as none), else the best discrete/integrated GPU, else a CPU adapter (lavapipe); Vulkan
    /// preferred. The CLI passes `--adapter` / `PAI_ADAPTER` here; nothing below reads the
    /// environment.
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
        Ok(Gpu {
            adapter,
            device,
            queue,
            info,
            limits,
            features,
            pipelines: Pipelines::default(),
            forced_matmul: Mutex::new(None),
            path: Mutex::new(KernelPath::default()),
            dispatched: Mutex::new(BTreeSet::new()),
            profile: Default::default(),
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

    /// Forces the matmul variant (an entry name such as `mm_generic`) for experiments and
    /// benchmarks, where that variant accepts the shape; `None` restores the automatic choice.
    pub fn force_matmul(&self, entry: Option<&str>) {
        *self.forced_matmul.lock().unwrap() = entry.map(str::to_string);
    }

    /// The forced matmul variant, if any.
    pub fn forced_matmul(&self) -> Option<String> {
        self.forced_matmul.lock().unwrap().clone()
    }

    /// Selects the generation of training kernels (benchmarks run both in one process).
    pub fn set_path(&self, path: KernelPath) {
        *self.path.lock().unwrap() = path;
    }

    /// The generation of training kernels that runs.
    pub fn path(&self) -> KernelPath {
        *self.path.lock().unwrap()
    }

    pub(crate) fn record_dispatch(&self, k: &Kernel) {
        self.dispatched.lock().unwrap().insert((k.file, k.entry));
    }

    /// The names (`file::entry`) of the kernels dispatched since the last call; clears the set.
    pub fn take_dispatched(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.dispatched.lock().unwrap())
            .into_iter()
            .map(|(f, e)| format!("{f}::{e}"))
            .collect()
    }

    /// Waits until all submitted work is done.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| anyhow!("waiting for the GPU: {e}"))?;
        Ok(())
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
}
