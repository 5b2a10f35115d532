//! Node kinds. Each kind is one static [`Kind`] declaration that says, in one
//! place, its parameters (type, default, doc), the inputs it accepts, the
//! outputs it writes with their retention class, the kernels it dispatches,
//! whether it takes the GPU, and how it runs. The engine knows kinds only
//! through this.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

pub mod artifact;
mod bpe_tokenizer;
pub mod command;
pub mod evaluate;
mod export;
pub mod generate;
pub mod gpt_init;
pub mod kinds;
pub mod models;
mod pack;
mod quantize;
mod source;
pub mod tokenize;
pub mod train;

pub use artifact::Artifact;
pub use source::SOURCE_KIND;

/// Every kind pai knows, in the order `pai kinds` lists them.
pub fn registry() -> &'static [&'static Kind] {
    static KINDS: &[&Kind] = &[
        &source::SOURCE,
        &bpe_tokenizer::BPE_TOKENIZER,
        &tokenize::TOKENIZE,
        &pack::PACK,
        &gpt_init::GPT_INIT,
        &train::TRAIN,
        &export::EXPORT,
        &quantize::QUANTIZE,
        &evaluate::EVALUATE,
        &command::COMMAND,
    ];
    KINDS
}

pub fn find(kind: &str) -> Option<&'static Kind> {
    registry().iter().copied().find(|s| s.kind() == kind)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamType {
    Int,
    Float,
    Str,
    Bool,
    StrList,
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamType::Int => "integer",
            ParamType::Float => "float",
            ParamType::Str => "string",
            ParamType::Bool => "bool",
            ParamType::StrList => "list of strings",
        })
    }
}

/// A parameter's default, as a compile-time constant.
#[derive(Clone, Copy, Debug)]
pub enum Default {
    Required,
    Int(i64),
    Float(f64),
    Str(&'static str),
    Bool(bool),
    StrList(&'static [&'static str]),
}

impl Default {
    pub fn value(&self) -> Option<Value> {
        Some(match *self {
            Default::Required => return None,
            Default::Int(v) => Value::Int(v),
            Default::Float(v) => Value::Float(v),
            Default::Str(v) => Value::Str(v.to_string()),
            Default::Bool(v) => Value::Bool(v),
            Default::StrList(v) => Value::StrList(v.iter().map(|s| s.to_string()).collect()),
        })
    }
}

#[derive(Clone, Copy, Debug)]
pub struct ParamDecl {
    pub name: &'static str,
    pub ty: ParamType,
    pub default: Default,
    pub doc: &'static str,
    /// Inclusive bounds for numbers.
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl ParamDecl {
    pub const fn new(
        name: &'static str,
        ty: ParamType,
        default: Default,
        doc: &'static str,
    ) -> Self {
        ParamDecl {
            name,
            ty,
            default,
            doc,
            min: None,
            max: None,
        }
    }
    pub const fn range(mut self, min: f64, max: f64) -> Self {
        self.min = Some(min);
        self.max = Some(max);
        self
    }
}

/// A parameter value after validation: always of the declared type.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    StrList(Vec<String>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Str(v) => write!(f, "{v:?}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::StrList(v) => write!(f, "{v:?}"),
        }
    }
}

/// A node's parameters with every declared default filled in.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Params(pub BTreeMap<String, Value>);

impl Params {
    fn get(&self, name: &str) -> Result<&Value> {
        self.0
            .get(name)
            .with_context(|| format!("parameter `{name}` is not set"))
    }
    pub fn int(&self, name: &str) -> Result<i64> {
        match self.get(name)? {
            Value::Int(v) => Ok(*v),
            other => bail!("parameter `{name}` is {other}, not an integer"),
        }
    }
    pub fn usize(&self, name: &str) -> Result<usize> {
        usize::try_from(self.int(name)?)
            .with_context(|| format!("parameter `{name}` must not be negative"))
    }
    pub fn float(&self, name: &str) -> Result<f64> {
        match self.get(name)? {
            Value::Float(v) => Ok(*v),
            Value::Int(v) => Ok(*v as f64),
            other => bail!("parameter `{name}` is {other}, not a number"),
        }
    }
    pub fn str(&self, name: &str) -> Result<&str> {
        match self.get(name)? {
            Value::Str(v) => Ok(v),
            other => bail!("parameter `{name}` is {other}, not a string"),
        }
    }
    pub fn bool(&self, name: &str) -> Result<bool> {
        match self.get(name)? {
            Value::Bool(v) => Ok(*v),
            other => bail!("parameter `{name}` is {other}, not a bool"),
        }
    }
    pub fn list(&self, name: &str) -> Result<&[String]> {
        match self.get(name)? {
            Value::StrList(v) => Ok(v),
            other => bail!("parameter `{name}` is {other}, not a list of strings"),
        }
    }
}

/// One input slot of a kind: which kinds of node may fill it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct InputDecl {
    pub role: &'static str,
    pub kinds: &'static [&'static str],
    pub doc: &'static str,
}

#[derive(Clone, Copy, Debug)]
pub enum Inputs {
    /// Each slot filled exactly once, matched by the input node's kind.
    Slots(&'static [InputDecl]),
    /// Any number of nodes of any kind (the `command` escape hatch).
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Never deleted while a current build references it.
    Keep,
    /// Deleted by `pai gc --temporaries` (optimizer states, checkpoints, snapshots).
    Temporary,
    /// Logs: deleted by `pai gc --temporaries` too.
    Log,
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Retention::Keep => "keep",
            Retention::Temporary => "temporary",
            Retention::Log => "log",
        })
    }
}

/// An output file a step writes. `name` may be a glob (`checkpoints/*`) for
/// a family of files; a required output must be written.
#[derive(Clone, Debug, Serialize)]
pub struct OutputDecl {
    pub name: String,
    pub retention: Retention,
    pub required: bool,
    pub doc: &'static str,
    /// The space study's row it belongs to (`pai du`, `pai space`).
    pub artifact: Artifact,
}

impl OutputDecl {
    pub fn keep(name: &str, doc: &'static str) -> Self {
        OutputDecl {
            name: name.to_string(),
            retention: Retention::Keep,
            required: true,
            doc,
            artifact: Artifact::Other,
        }
    }
    pub fn temporary(name: &str, doc: &'static str) -> Self {
        OutputDecl {
            name: name.to_string(),
            retention: Retention::Temporary,
            required: false,
            doc,
            artifact: Artifact::Other,
        }
    }
    pub fn log(name: &str, doc: &'static str) -> Self {
        OutputDecl {
            name: name.to_string(),
            retention: Retention::Log,
            required: false,
            doc,
            artifact: Artifact::Logs,
        }
    }
    /// The same output, in the study's row `a`.
    pub fn artifact(self, a: Artifact) -> Self {
        OutputDecl {
            artifact: a,
            ..self
        }
    }
    /// Whether the name is a glob (`*`, `?` or `[`) rather than one file's name.
    pub fn is_glob(name: &str) -> bool {
        name.contains(['*', '?', '['])
    }
    pub fn matches(&self, file: &str) -> bool {
        if Self::is_glob(&self.name) {
            globset::Glob::new(&self.name)
                .map(|g| g.compile_matcher().is_match(file))
                .unwrap_or(false)
        } else {
            self.name == file
        }
    }
}

/// A file of an input node as a step sees it. For a `source` input, `path`
/// is the file in the user's tree; otherwise the immutable object in the store.
#[derive(Clone, Debug)]
pub struct InputFile {
    pub name: String,
    pub path: PathBuf,
    pub hash: String,
    pub bytes: u64,
}

#[derive(Clone, Debug)]
pub struct InputView {
    pub role: String,
    pub node: String,
    pub kind: String,
    /// The folder a user would look at: the source folder, or `cache/out/<node>`.
    pub dir: PathBuf,
    pub files: Vec<InputFile>,
}

impl InputView {
    pub fn file(&self, name: &str) -> Result<&InputFile> {
        self.files
            .iter()
            .find(|f| f.name == name)
            .with_context(|| format!("input `{}` has no output `{name}`", self.node))
    }

    /// Reads a file and checks it still has the content hash the build was
    /// keyed on (a source file edited during the build is an error, not a
    /// silently wrong output).
    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        read_verified(self.file(name)?)
    }
}

pub fn read_verified(f: &InputFile) -> Result<Vec<u8>> {
    let bytes = std::fs::read(&f.path).with_context(|| format!("reading {}", f.path.display()))?;
    let hash = blake3::hash(&bytes).to_hex();
    if hash.as_str() != f.hash {
        bail!(
            "{} changed while pai was building (expected BLAKE3 {}, found {}); run the build again",
            f.path.display(),
            &f.hash[..12],
            &hash[..12]
        );
    }
    Ok(bytes)
}

/// What a running step sees: its parameters, its inputs, the folder its
/// outputs go to, a work folder that survives a killed build, and (for kinds
/// that declare it) the GPU. Steps know nothing of the store's layout. Every
/// folder is an absolute path.
pub struct StepCtx<'a> {
    pub node: &'a str,
    pub params: &'a Params,
    pub inputs: &'a [InputView],
    pub out_dir: &'a Path,
    /// Resumable state of this build (a training run's checkpoints): the same
    /// folder for the same action key, kept when a build is killed or fails,
    /// removed when the key commits.
    pub work_dir: &'a Path,
    pub project_dir: &'a Path,
    pub progress: &'a (dyn Fn(u64, u64, &str) + Sync),
    /// A one-line status for the progress bar (loss, tokens/s, …).
    pub message: &'a (dyn Fn(&str) + Sync),
    /// A one-line summary of the result, kept in the build's record and shown
    /// beside the node's build line.
    pub summary: &'a (dyn Fn(&str) + Sync),
    /// The build's device; `None` for kinds that do not declare the GPU.
    pub gpu: Option<&'a LazyGpu>,
}

impl StepCtx<'_> {
    pub fn input(&self, role: &str) -> Result<&InputView> {
        self.inputs
            .iter()
            .find(|i| i.role == role)
            .with_context(|| format!("node `{}` has no `{role}` input", self.node))
    }
    pub fn out(&self, name: &str) -> PathBuf {
        self.out_dir.join(name)
    }
    /// What the step's operations run on: the build's wgpu device, opened on first use (once
    /// per build), or the native CPU adapter when the build chose it (`--adapter cpu`; no wgpu
    /// device is opened then). Only kinds that declare `gpu` may use it: they hold the single
    /// GPU slot.
    pub fn device(&self) -> Result<crate::gpu::Device<'_>> {
        self.lazy_gpu()?.device()
    }

    fn lazy_gpu(&self) -> Result<&LazyGpu> {
        match self.gpu {
            Some(g) => Ok(g),
            None => bail!(
                "node `{}`: its kind does not declare that it uses the GPU (`gpu` in its Kind)",
                self.node
            ),
        }
    }
}

/// The process's device, opened on first use with the build's adapter choice.
pub struct LazyGpu {
    adapter: Option<String>,
    cell: std::sync::OnceLock<std::result::Result<crate::gpu::Gpu, String>>,
}

impl LazyGpu {
    pub fn new(adapter: Option<String>) -> Self {
        LazyGpu {
            adapter,
            cell: std::sync::OnceLock::new(),
        }
    }
    pub fn get(&self) -> Result<&crate::gpu::Gpu> {
        self.cell
            .get_or_init(|| {
                crate::gpu::Gpu::new(self.adapter.as_deref()).map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
    /// The device if a step has opened it.
    pub fn opened(&self) -> Option<&crate::gpu::Gpu> {
        self.cell.get().and_then(|r| r.as_ref().ok())
    }
    /// True when the build runs on the native CPU adapter (`--adapter cpu`).
    pub fn is_native(&self) -> bool {
        crate::gpu::native::is_native(self.adapter.as_deref())
    }
    /// The native adapter when the build chose it, else the wgpu device (opened on first use).
    pub fn device(&self) -> Result<crate::gpu::Device<'_>> {
        if self.is_native() {
            Ok(crate::gpu::Device::Native)
        } else {
            self.get().map(crate::gpu::Device::Wgpu)
        }
    }
}

/// Whether a kind's nodes take the process's single GPU slot.
#[derive(Clone, Copy, Debug)]
pub enum GpuUse {
    No,
    Yes,
    /// When the named bool parameter is true (`command`'s `gpu`).
    IfParam(&'static str),
}

/// The GPU kernels a kind dispatches, as lists of entry points (one list per op): their WGSL
/// text, includes and all, is part of the kind's action keys, and a node that dispatches a
/// kernel its kind does not declare fails.
pub type Kernels = &'static [&'static [&'static crate::gpu::Kernel]];

/// One node kind, declared in one static value: what it is, what it reads and writes, what it
/// dispatches and how it runs. The engine knows kinds only through this.
pub struct Kind {
    pub name: &'static str,
    /// Bumped whenever the implementation can change a bit of the output.
    pub version: u32,
    pub doc: &'static str,
    pub params: &'static [ParamDecl],
    pub inputs: Inputs,
    pub outputs: fn(&Params) -> Result<Vec<OutputDecl>>,
    pub kernels: Kernels,
    pub gpu: GpuUse,
    /// Cross-parameter checks beyond type and range; the message names the fix.
    pub validate: fn(&Params) -> std::result::Result<(), String>,
    /// Whether the kind may read its inputs' temporary outputs (then a producer whose
    /// temporaries were collected is rebuilt before it runs). Built-in kinds read only `keep`
    /// outputs.
    pub reads_temporaries: bool,
    /// Resumes from what an interrupted build of the same key left in its
    /// work folder (`train`'s checkpoints); others only leave logs there.
    pub resumes: bool,
    /// True for `source`: hashed by the engine, never run, stores nothing.
    pub source: bool,
    /// Checks against the parameters of the input nodes (looked up by role),
    /// at plan time: e.g. `train`'s model context must equal its pack's.
    pub input_checks: Option<InputChecks>,
    pub run: fn(&StepCtx) -> Result<()>,
}

/// A kind's plan-time check against its inputs' parameters.
pub type InputChecks = fn(&Params, &InputParams) -> std::result::Result<(), String>;

/// The parameters of a node's inputs, by role, and of every node upstream of
/// it, for [`Kind::input_checks`].
pub struct InputParams<'a> {
    /// (role, kind, parameters) of the direct inputs, in the order of `inputs`
    /// (for `Inputs::Any` kinds the role is the node's name).
    pub inputs: Vec<(&'a str, &'a str, &'a Params)>,
    /// (kind, parameters) of every node upstream, nearest first.
    pub upstream: Vec<(&'a str, &'a Params)>,
}

impl InputParams<'_> {
    /// The parameters of the input in `role`.
    pub fn get(&self, role: &str) -> Option<&Params> {
        self.inputs
            .iter()
            .find(|(r, _, _)| *r == role)
            .map(|(_, _, p)| *p)
    }
    /// The parameters of the nearest node of `kind` upstream (e.g. the `gpt-init`
    /// behind a `train` input).
    pub fn upstream(&self, kind: &str) -> Option<&Params> {
        self.upstream
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, p)| *p)
    }
}

impl Kind {
    /// The defaults a declaration spells out only where it differs: no kernels, no GPU, no
    /// checks, reads only `keep` outputs, not a source. `name`, `version`, `doc`, `params`,
    /// `inputs`, `outputs` and `run` are always given.
    pub const PLAIN: Kind = Kind {
        name: "",
        version: 0,
        doc: "",
        params: &[],
        inputs: Inputs::Slots(&[]),
        outputs: |_| Ok(Vec::new()),
        kernels: &[],
        gpu: GpuUse::No,
        validate: no_checks,
        reads_temporaries: false,
        resumes: false,
        source: false,
        input_checks: None,
        run: |ctx| bail!("node `{}`: its kind has no implementation", ctx.node),
    };
}

/// A `validate` that accepts every parameter set.
pub fn no_checks(_: &Params) -> std::result::Result<(), String> {
    Ok(())
}

impl Kind {
    pub fn kind(&self) -> &'static str {
        self.name
    }
    pub fn version(&self) -> u32 {
        self.version
    }
    pub fn doc(&self) -> &'static str {
        self.doc
    }
    pub fn params(&self) -> &'static [ParamDecl] {
        self.params
    }
    pub fn inputs(&self) -> Inputs {
        self.inputs
    }
    pub fn outputs(&self, params: &Params) -> Result<Vec<OutputDecl>> {
        (self.outputs)(params)
    }
    pub fn uses_gpu(&self, params: &Params) -> bool {
        match self.gpu {
            GpuUse::No => false,
            GpuUse::Yes => true,
            GpuUse::IfParam(p) => params.bool(p).unwrap_or(false),
        }
    }
    pub fn validate(&self, params: &Params) -> std::result::Result<(), String> {
        (self.validate)(params)
    }
    pub fn reads_temporaries(&self) -> bool {
        self.reads_temporaries
    }
    pub fn is_source(&self) -> bool {
        self.source
    }
    pub fn run(&self, ctx: &StepCtx) -> Result<()> {
        (self.run)(ctx)
    }
    /// (name, WGSL text as compiled) of every kernel the kind declares, sorted by name, each
    /// once: what its action keys hash.
    pub fn shaders(&self) -> Vec<(String, String)> {
        crate::gpu::kernel_sources(self.kernels)
    }
    /// Names of the kernels the kind declares.
    pub fn kernel_names(&self) -> std::collections::BTreeSet<String> {
        self.kernels
            .iter()
            .flat_map(|l| l.iter())
            .map(|k| k.name())
            .collect()
    }
}

/// Markdown reference of every kind, as README embeds it (a test keeps the
/// README in step with these declarations).
pub fn kinds_markdown() -> String {
    let mut s = String::new();
    for step in registry() {
        s.push_str(&format!("### `{}`\n\n{}\n\n", step.kind(), step.doc()));
        match step.inputs() {
            Inputs::Slots(slots) if !slots.is_empty() => {
                s.push_str("Inputs: ");
                let parts: Vec<String> = slots
                    .iter()
                    .map(|i| format!("{} (`{}`)", i.role, i.kinds.join("` or `")))
                    .collect();
                s.push_str(&parts.join(", "));
                s.push_str("\n\n");
            }
            Inputs::Slots(_) => s.push_str("Inputs: none\n\n"),
            Inputs::Any => s.push_str("Inputs: any nodes\n\n"),
        }
        if !step.params().is_empty() {
            s.push_str("| parameter | type | default | meaning |\n|---|---|---|---|\n");
            for p in step.params() {
                let default = match p.default.value() {
                    None => "required".to_string(),
                    Some(v) => format!("`{v}`"),
                };
                let mut doc = p.doc.to_string();
                if let (Some(lo), Some(hi)) = (p.min, p.max) {
                    doc.push_str(&format!(" ({lo} to {hi})"));
                }
                s.push_str(&format!(
                    "| `{}` | {} | {} | {} |\n",
                    p.name, p.ty, default, doc
                ));
            }
            s.push('\n');
        }
        let defaults = default_params(step);
        if let Ok(outs) = step.outputs(&defaults)
            && !outs.is_empty()
        {
            let o: Vec<String> = outs
                .iter()
                .map(|o| format!("`{}` ({})", o.name, o.retention))
                .collect();
            s.push_str(&format!("Outputs: {}\n\n", o.join(", ")));
        }
    }
    s
}

/// The declared defaults (required parameters left out).
pub fn default_params(step: &Kind) -> Params {
    Params(
        step.params()
            .iter()
            .filter_map(|p| p.default.value().map(|v| (p.name.to_string(), v)))
            .collect(),
    )
}

/// Deterministic PRNG for seeded choices in steps (stable across platforms and
/// crate versions, which a content-addressed build needs).
pub use crate::model::rng::SplitMix64;
