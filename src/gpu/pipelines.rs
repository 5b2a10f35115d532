//! Kernels and the pipeline cache. A [`Kernel`] is one entry point of one WGSL file in
//! `shaders/`; its text, with `// #include "file.wgsl"` lines resolved, is compiled once per
//! device. Everything else about it is read from that text: the bind-group layout (wgpu's
//! automatic layout of the entry point), and, by naga reflection, the workgroup size, the
//! storage bindings the entry point uses (by name) and the size of its uniform `Params` block.
//! Nothing about a kernel is written a second time on the Rust side.

use super::Gpu;
use anyhow::{Context, Result, anyhow, bail, ensure};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One WGSL entry point: `shaders/<file>.wgsl`, function `entry`.
#[derive(Debug)]
pub struct Kernel {
    /// The file's stem (`matmul_tile` for `shaders/matmul_tile.wgsl`).
    pub file: &'static str,
    /// The file's text as written (includes unresolved).
    pub source: &'static str,
    /// The entry point.
    pub entry: &'static str,
    /// Size in bytes of the Rust uniform struct the kernel is dispatched with (checked against
    /// the WGSL `Params` block by reflection).
    pub params: usize,
}

/// Declares a [`Kernel`]: `kernel!("file stem", "entry", RustParamsType)`.
macro_rules! kernel {
    ($file:literal, $entry:literal, $params:ty) => {
        $crate::gpu::Kernel {
            file: $file,
            source: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/shaders/",
                $file,
                ".wgsl"
            )),
            entry: $entry,
            params: std::mem::size_of::<$params>(),
        }
    };
}
pub(crate) use kernel;

/// Files that kernel files include (`// #include "name"`), by name.
const SHARED: &[(&str, &str)] = &[
    ("common.wgsl", include_str!("../../shaders/common.wgsl")),
    ("gelu.wgsl", include_str!("../../shaders/gelu.wgsl")),
    (
        "matmul_common.wgsl",
        include_str!("../../shaders/matmul_common.wgsl"),
    ),
];

/// Resolves `// #include "name"` lines (each shared file at most once, recursively).
fn resolve(src: &str, seen: &mut Vec<&'static str>, out: &mut String) -> Result<()> {
    for line in src.lines() {
        if let Some(rest) = line.trim().strip_prefix("// #include ") {
            let name = rest.trim().trim_matches('"');
            let (n, text) = SHARED
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| anyhow!("#include of unknown shared file {name:?}"))?;
            if !seen.contains(n) {
                seen.push(n);
                resolve(text, seen, out)?;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(())
}

impl Kernel {
    /// `<file stem>::<entry>`, e.g. `matmul_tile::mm_tile16x8`.
    pub fn name(&self) -> String {
        format!("{}::{}", self.file, self.entry)
    }

    /// The full WGSL text as compiled (includes resolved): what action keys hash.
    pub fn wgsl(&self) -> String {
        let mut out = String::new();
        if let Err(e) = resolve(self.source, &mut Vec::new(), &mut out) {
            // A bad include is a bug in shaders/ that every test that compiles a kernel catches.
            panic!("shaders/{}.wgsl: {e}", self.file);
        }
        out
    }

    /// Reflection of this entry point (parses the text with naga).
    pub fn reflect(&self) -> Result<Reflection> {
        reflect(&self.wgsl(), self.entry).with_context(|| format!("kernel {}", self.name()))
    }
}

/// (name, full WGSL text) of every kernel in the lists, sorted and deduplicated by name: what a
/// node kind's action key hashes.
pub fn kernel_sources(lists: &[&[&Kernel]]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = lists
        .iter()
        .flat_map(|l| l.iter())
        .map(|k| (k.name(), k.wgsl()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.dedup_by(|a, b| a.0 == b.0);
    v
}

/// What naga reads from an entry point.
#[derive(Clone, Debug)]
pub struct Reflection {
    /// Invocations per workgroup (x·y·z of `@workgroup_size`).
    pub workgroup: u32,
    /// Size in bytes of the uniform at binding 0, rounded up to 16 (None if unused).
    pub uniform: Option<usize>,
    /// The storage buffers the entry point uses: (binding, variable name), by binding.
    pub storage: Vec<(u32, String)>,
}

fn reflect(src: &str, entry: &str) -> Result<Reflection> {
    let module = naga::front::wgsl::parse_str(src)
        .map_err(|e| anyhow!("WGSL does not parse: {}", e.emit_to_string(src)))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| anyhow!("WGSL does not validate: {}", e.emit_to_string(src)))?;
    let (idx, ep) = module
        .entry_points
        .iter()
        .enumerate()
        .find(|(_, e)| e.name == entry)
        .ok_or_else(|| anyhow!("no entry point {entry:?}"))?;
    let fi = info.get_entry_point(idx);
    let mut uniform = None;
    let mut storage = Vec::new();
    for (h, gv) in module.global_variables.iter() {
        if fi[h].is_empty() {
            continue;
        }
        let Some(rb) = &gv.binding else { continue };
        ensure!(
            rb.group == 0,
            "binding group {} (only group 0 is used)",
            rb.group
        );
        match gv.space {
            naga::AddressSpace::Uniform => {
                ensure!(rb.binding == 0, "a uniform at binding {}", rb.binding);
                let size = module.types[gv.ty].inner.size(module.to_ctx()) as usize;
                uniform = Some(size.div_ceil(16) * 16);
            }
            naga::AddressSpace::Storage { .. } => {
                storage.push((rb.binding, gv.name.clone().unwrap_or_default()));
            }
            other => bail!("binding {} in address space {other:?}", rb.binding),
        }
    }
    storage.sort();
    Ok(Reflection {
        workgroup: ep.workgroup_size.iter().product(),
        uniform,
        storage,
    })
}

/// A compiled kernel.
pub(crate) struct Compiled {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub reflection: Reflection,
}

/// Shader modules (by file) and pipelines (by file and entry) of one device.
#[derive(Default)]
pub(crate) struct Pipelines {
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    compiled: Mutex<HashMap<(&'static str, &'static str), Arc<Compiled>>>,
}

impl Gpu {
    fn module(&self, k: &Kernel) -> Result<wgpu::ShaderModule> {
        let mut modules = self.pipelines.modules.lock().unwrap();
        if let Some(m) = modules.get(k.file) {
            return Ok(m.clone());
        }
        let src = k.wgsl();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let m = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(k.file),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!("shader {}.wgsl does not compile: {e}", k.file);
        }
        modules.insert(k.file, m.clone());
        Ok(m)
    }

    pub(crate) fn compiled(&self, k: &Kernel) -> Result<Arc<Compiled>> {
        if let Some(c) = self
            .pipelines
            .compiled
            .lock()
            .unwrap()
            .get(&(k.file, k.entry))
        {
            return Ok(c.clone());
        }
        let reflection = k.reflect()?;
        ensure!(
            reflection.uniform.unwrap_or(0) == k.params,
            "kernel {}: the WGSL Params block takes {} bytes, the Rust struct {}",
            k.name(),
            reflection.uniform.unwrap_or(0),
            k.params
        );
        ensure!(
            reflection.storage.len() as u32 <= self.limits.max_storage_buffers_per_shader_stage,
            "kernel {} needs {} storage buffers; this adapter allows {}",
            k.name(),
            reflection.storage.len(),
            self.limits.max_storage_buffers_per_shader_stage
        );
        ensure!(
            reflection.workgroup <= self.limits.max_compute_invocations_per_workgroup,
            "kernel {} uses {} invocations per workgroup; this adapter allows {}",
            k.name(),
            reflection.workgroup,
            self.limits.max_compute_invocations_per_workgroup
        );
        let module = self.module(k)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(k.entry),
                // The layout wgpu derives from what the entry point uses.
                layout: None,
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
        let layout = pipeline.get_bind_group_layout(0);
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!("building kernel {}: {e}", k.name());
        }
        let c = Arc::new(Compiled {
            pipeline,
            layout,
            reflection,
        });
        self.pipelines
            .compiled
            .lock()
            .unwrap()
            .insert((k.file, k.entry), c.clone());
        Ok(c)
    }

    /// Compiles a kernel now (benchmarks warm up this way).
    pub fn prepare(&self, k: &Kernel) -> Result<()> {
        self.compiled(k).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn a_shared_file_included_twice_is_pasted_once_and_an_unknown_one_is_refused() {
        // matmul_common.wgsl includes common.wgsl again.
        let src = "// #include \"common.wgsl\"\n// #include \"matmul_common.wgsl\"\nfn main() {}\n";
        let mut out = String::new();
        resolve(src, &mut Vec::new(), &mut out).unwrap();
        assert_eq!(out.matches("fn wg_linear").count(), 1, "{out}");
        assert!(out.contains("fn put4") && out.contains("fn main"));
        let err = resolve(
            "// #include \"nope.wgsl\"\n",
            &mut Vec::new(),
            &mut String::new(),
        );
        assert!(err.unwrap_err().to_string().contains("nope.wgsl"));
    }
}
