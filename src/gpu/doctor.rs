//! `pai doctor`: every wgpu adapter, which one pai uses, and how to get one when there is none;
//! beside them the native CPU adapter (opt-in, `--adapter cpu`) with its measured speed.

use super::{NO_ADAPTER_HELP, adapter_preference, choose, instance, native};
use serde::Serialize;
use std::fmt;

/// Limits of an adapter that matter to pai's kernels.
#[derive(Clone, Debug, Serialize)]
pub struct KeyLimits {
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub max_storage_buffers_per_shader_stage: u32,
}

/// One adapter as wgpu reports it.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterReport {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub vendor: u32,
    pub device: u32,
    pub subgroups: bool,
    pub limits: KeyLimits,
    /// True for the adapter pai would use.
    pub chosen: bool,
}

/// The native CPU adapter (`--adapter cpu`): never chosen unless named.
#[derive(Clone, Debug, Serialize)]
pub struct NativeReport {
    /// Its reserved adapter name, `cpu`.
    pub name: String,
    /// How records name it ("cpu (native f32, N threads)").
    pub description: String,
    /// Threads of the rayon ops and of sgemm.
    pub threads: usize,
    pub sgemm_threads: usize,
    /// sgemm at [`super::native::PROBE_SHAPE`] (m, n, k), measured now.
    pub sgemm_gflops: f64,
    pub probe_shape: [usize; 3],
    /// How to use it: "opt-in: --adapter cpu".
    pub opt_in: String,
    /// True when the preference names it (then no wgpu adapter is chosen).
    pub chosen: bool,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct DoctorReport {
    pub adapters: Vec<AdapterReport>,
    /// Index into `adapters` of the one pai uses, if any.
    pub chosen: Option<usize>,
    /// The preference in effect (`--adapter` or `PAI_ADAPTER`).
    pub preference: Option<String>,
    /// Why no adapter is used, and how to get one (None when one is chosen).
    pub problem: Option<String>,
    /// The native CPU adapter, beside the wgpu ones.
    pub native: NativeReport,
}

impl DoctorReport {
    /// True when pai has an adapter to run on.
    pub fn ok(&self) -> bool {
        self.chosen.is_some() || self.native.chosen
    }
}

/// The native adapter's entry, its speed measured now (well under a second).
fn native_report(chosen: bool) -> NativeReport {
    let (m, n, k) = native::PROBE_SHAPE;
    NativeReport {
        name: native::NAME.into(),
        description: native::describe(),
        threads: native::threads(),
        sgemm_threads: native::matmul_threads(),
        sgemm_gflops: native::sgemm_gflops(),
        probe_shape: [m, n, k],
        opt_in: format!("opt-in: --adapter {}", native::NAME),
        chosen,
    }
}

/// Enumerates all adapters (all backends) and marks the one `Gpu::new(adapter_pref)` would use.
pub fn report(adapter_pref: Option<&str>) -> DoctorReport {
    let pref = adapter_preference(adapter_pref);
    let inst = instance();
    let adapters = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
    let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(|a| a.get_info()).collect();
    let native_chosen = native::is_native(pref.as_deref());
    let (chosen, problem) = match choose(&infos, pref.as_deref()) {
        _ if native_chosen => (None, None),
        Ok(i) => (Some(i), None),
        Err(e) if infos.is_empty() => (None, Some(format!("{e}"))),
        Err(e) => (None, Some(format!("{e}"))),
    };
    let adapters = adapters
        .iter()
        .zip(&infos)
        .enumerate()
        .map(|(i, (a, info))| {
            let l = a.limits();
            AdapterReport {
                name: info.name.clone(),
                backend: format!("{:?}", info.backend),
                device_type: format!("{:?}", info.device_type),
                driver: info.driver.clone(),
                driver_info: info.driver_info.clone(),
                vendor: info.vendor,
                device: info.device,
                subgroups: a.features().contains(wgpu::Features::SUBGROUP),
                limits: KeyLimits {
                    max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
                    max_buffer_size: l.max_buffer_size,
                    max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
                    max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
                    max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
                    max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
                },
                chosen: Some(i) == chosen,
            }
        })
        .collect();
    DoctorReport {
        adapters,
        chosen,
        preference: pref,
        problem,
        native: native_report(native_chosen),
    }
}

fn bytes(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64)
    } else if n >= 1 << 20 {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

impl fmt::Display for DoctorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.adapters.is_empty() {
            writeln!(f, "adapters: none")?;
        } else {
            writeln!(f, "adapters ({}):", self.adapters.len())?;
        }
        for a in &self.adapters {
            let mark = if a.chosen { "*" } else { " " };
            writeln!(f, "{mark} {} [{} {}]", a.name, a.backend, a.device_type)?;
            writeln!(f, "    driver: {} {}", a.driver, a.driver_info)?;
            let l = &a.limits;
            writeln!(
                f,
                "    limits: storage binding {}, buffer {}, workgroups/dim {}, invocations/workgroup {}, \
                 workgroup memory {}, storage buffers/stage {}{}",
                bytes(l.max_storage_buffer_binding_size),
                bytes(l.max_buffer_size),
                l.max_compute_workgroups_per_dimension,
                l.max_compute_invocations_per_workgroup,
                bytes(l.max_compute_workgroup_storage_size as u64),
                l.max_storage_buffers_per_shader_stage,
                if a.subgroups { ", subgroups" } else { "" }
            )?;
        }
        let n = &self.native;
        let mark = if n.chosen { "*" } else { " " };
        writeln!(
            f,
            "{mark} {} [native f32, Cpu] — {}",
            n.description, n.opt_in
        )?;
        writeln!(
            f,
            "    sgemm {:.1} GFLOP/s at {}×{}×{} ({} threads; rayon {}), measured now; WGSL stays the default path",
            n.sgemm_gflops,
            n.probe_shape[0],
            n.probe_shape[1],
            n.probe_shape[2],
            n.sgemm_threads,
            n.threads
        )?;
        if let Some(p) = &self.preference {
            writeln!(f, "preference: {p:?} (--adapter / PAI_ADAPTER)")?;
        }
        if self.native.chosen {
            return writeln!(
                f,
                "pai uses: {} — native code on the CPU, no wgpu device opened",
                self.native.description
            );
        }
        match (self.chosen, &self.problem) {
            (Some(i), _) => {
                let a = &self.adapters[i];
                write!(f, "pai uses: {} ({}, {})", a.name, a.backend, a.device_type)?;
                if a.device_type == "Cpu" {
                    write!(
                        f,
                        " — a software rasterizer: correct but slow; a GPU driver makes pai much faster"
                    )?;
                }
                writeln!(f)
            }
            (None, Some(p)) => writeln!(
                f,
                "pai uses: nothing — {p}\n(or run on pai's native CPU adapter: --adapter {})",
                native::NAME
            ),
            (None, None) => writeln!(
                f,
                "pai uses: nothing — {NO_ADAPTER_HELP}\n(or run on pai's native CPU adapter: --adapter {})",
                native::NAME
            ),
        }
    }
}
