//! The `pai` command line: parse, call the library, print.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

use pai::engine::{self, BuildOptions, NodeStatus, Project};
use pai::report::{self, Ui};
use pai::spec::UsageError;
use pai::store::{lock, verify};
use pai::{graph, steps};

#[derive(Parser)]
#[command(
    name = "pai",
    version,
    about = "Grow a language model from a text corpus as an incremental, content-addressed build"
)]
struct Cli {
    /// Run as if started in DIR (the project folder: Pipeline.toml, corpus/, cache/).
    #[arg(short = 'C', value_name = "DIR", global = true)]
    dir: Option<PathBuf>,
    /// Pipeline file, relative to the project folder [default: Pipeline.toml].
    #[arg(short = 'f', long = "file", value_name = "FILE", global = true)]
    file: Option<PathBuf>,
    /// Nodes to run at once [default: number of CPUs].
    #[arg(short = 'j', long = "jobs", value_name = "N", global = true)]
    jobs: Option<usize>,
    /// Print one JSON document on stdout (human text goes to stderr).
    #[arg(long, global = true)]
    json: bool,
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Print more.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// GPU adapter to use: a substring of its name, or a backend (vulkan, gl)
    /// [default: the best GPU, else a CPU adapter].
    #[arg(long, value_name = "NAME", global = true, env = "PAI_ADAPTER")]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build targets (default: the pipeline's `default`) and what they need.
    Build {
        targets: Vec<String>,
        /// Say what would be built or restored; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// What is stale and why; builds nothing.
    Status { targets: Vec<String> },
    /// What changed in a node's key since its current build.
    Explain { node: String },
    /// Delete what no current build reaches.
    Gc {
        /// Say what would go and how many bytes; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also delete temporary and log outputs of current builds (`--temporaries=false`
        /// overrides `temporaries = true` in the [gc] table).
        #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        temporaries: Option<bool>,
        /// Keep the N newest older builds of each node too [default: 0, or `keep` in [gc]].
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// Also delete temporaries when the kept objects would exceed SIZE (e.g. 10G).
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
        /// Keep unreachable records and objects younger than this (e.g. 1h, 30m, 0)
        /// [default: 1h, or `grace` in [gc]].
        #[arg(long, value_name = "DURATION")]
        grace: Option<String>,
    },
    /// The funnel as built: every node's outputs and sizes, the cache total, what gc would free.
    Du,
    /// The pipeline DAG.
    Graph {
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// A node's output folder, or one output's path.
    Path {
        node: String,
        output: Option<String>,
    },
    /// Re-hash every object in the store and check records and refs.
    Verify {
        /// Delete corrupt objects and unreadable records (the next build rebuilds them).
        #[arg(long)]
        repair: bool,
    },
    /// The GPU adapters found, the one pai uses, and how to get one if none.
    Doctor,
    /// Sample text from a built model (a train, export or quantize node), streamed as it comes.
    Generate {
        /// The model node [default: the pipeline's default target].
        #[arg(long, value_name = "NODE")]
        model: Option<String>,
        /// New tokens at most (generation also stops when the context is full).
        #[arg(long, value_name = "N", default_value_t = 200)]
        tokens: usize,
        /// Softmax temperature; 0 = greedy.
        #[arg(long, value_name = "T", default_value_t = 0.8)]
        temperature: f32,
        /// Sample among the K most likely tokens; 0 = all.
        #[arg(long, value_name = "K", default_value_t = 40)]
        top_k: usize,
        /// Sampling seed: the same seed gives the same text.
        #[arg(long, value_name = "S", default_value_t = 1)]
        seed: u64,
        /// Text to continue [default: start from <|endoftext|>].
        #[arg(default_value = "")]
        prompt: String,
    },
    /// Every node kind with its parameters, inputs and outputs.
    Kinds {
        /// Print the Markdown reference the README embeds.
        #[arg(long)]
        markdown: bool,
    },
    /// Measured figures beside a baseline measured in the same run.
    Bench {
        #[arg(value_enum, default_value_t = BenchWhat::Engine)]
        what: BenchWhat,
        /// Files in the generated corpus (engine benchmark).
        #[arg(long, default_value_t = 10_000)]
        files: usize,
        /// Total bytes of the generated corpus, e.g. 1G (engine benchmark).
        #[arg(long, default_value = "1G")]
        bytes: String,
        /// Runs of each no-op measurement (engine); training steps timed (train).
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Dot,
    Mermaid,
}

#[derive(Clone, Copy, ValueEnum)]
enum BenchWhat {
    /// No-op builds and source hashing.
    Engine,
    /// WGSL kernels against CPU baselines.
    Kernels,
    /// Training steps of the pipeline's model on the adapter, against the plain-Rust
    /// reference (`--runs` steps are timed).
    Train,
    /// Quantize throughput beside the reference quantizer; generation tokens/s, f32 and q4_0.
    Quant,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            let usage = e.downcast_ref::<UsageError>().is_some();
            if cli.json {
                println!("{}", json!({ "error": format!("{e:#}") }));
            }
            eprintln!("error: {e:#}");
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// Prints a report: its JSON document with `--json`, else its text (with a closing newline
/// when `newline`).
fn show<R: serde::Serialize + std::fmt::Display>(cli: &Cli, r: &R, newline: bool) -> Result<()> {
    if cli.json {
        print_json(&serde_json::to_value(r)?);
    } else if newline {
        println!("{r}");
    } else {
        print!("{r}");
    }
    Ok(())
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn project_dir(cli: &Cli) -> PathBuf {
    cli.dir.clone().unwrap_or_else(|| PathBuf::from("."))
}

fn open(cli: &Cli) -> Result<Project> {
    Project::open(&project_dir(cli), cli.file.as_deref())
}

fn run(cli: &Cli) -> Result<ExitCode> {
    let ui = Ui::new(cli.quiet, cli.verbose);
    match &cli.command {
        Command::Kinds { markdown } => {
            if *markdown {
                print!("{}", steps::kinds_markdown());
            } else if cli.json {
                print_json(&kinds_json());
            } else {
                print!("{}", steps::kinds_markdown().replace("`", ""));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Build { targets, dry_run } => {
            let project = open(cli)?;
            let targets = project.targets(targets)?;
            if *dry_run {
                let states = engine::status(&project, &targets);
                if cli.json {
                    print_json(&json!({ "dry_run": true, "nodes": states }));
                } else {
                    for s in &states {
                        let word = match s.action.as_str() {
                            "fresh" => "fresh",
                            "restore" => "would restore",
                            "error" => "error",
                            _ => "would build",
                        };
                        println!("{word:>14} {}", s.name);
                        if s.action != "fresh" && !cli.quiet {
                            for r in &s.reasons {
                                println!("{:>14}   {r}", "");
                            }
                        }
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let jobs = cli.jobs.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            });
            pai::process::stop_commands_on_signals()?;
            let reports = project.locked_build(
                &targets,
                &BuildOptions {
                    jobs,
                    adapter: cli.adapter.clone(),
                },
                &ui,
            );
            pai::process::hold_if_stopping();
            let reports = reports?;
            let ok = reports.iter().all(|r| {
                matches!(
                    r.status,
                    NodeStatus::Fresh | NodeStatus::Restored | NodeStatus::Built
                )
            });
            if cli.json {
                print_json(&json!({ "ok": ok, "nodes": reports }));
            }
            if !ok {
                let failed: Vec<&str> = reports
                    .iter()
                    .filter(|r| r.status == NodeStatus::Failed)
                    .map(|r| r.name.as_str())
                    .collect();
                eprintln!("error: the build failed at {}", failed.join(", "));
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Status { targets } => {
            let project = open(cli)?;
            let targets = project.targets(targets)?;
            let states = engine::status(&project, &targets);
            let errors = states.iter().any(|s| s.action == "error");
            if cli.json {
                print_json(&json!({ "nodes": states }));
            } else {
                for s in &states {
                    let word = if s.stale {
                        format!("stale ({})", s.action)
                    } else {
                        "fresh".into()
                    };
                    println!("{word:>17} {}", s.name);
                    for r in &s.reasons {
                        println!("{:>17}   {r}", "");
                    }
                }
                if states.iter().all(|s| !s.stale) {
                    eprintln!("everything is up to date");
                }
            }
            Ok(if errors {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Explain { node } => {
            let project = open(cli)?;
            let idx = project.pipeline.node(node)?;
            show(cli, &engine::explain(&project, idx)?, false)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Gc {
            dry_run,
            temporaries,
            keep,
            max_size,
            grace,
        } => {
            let max_size = match max_size {
                None => None,
                Some(s) => Some(report::parse_size(s).ok_or_else(|| {
                    UsageError(format!("--max-size {s:?} is not a size (try 10G, 500M)"))
                })?),
            };
            let grace = match grace {
                None => None,
                Some(s) => Some(pai::spec::gc::parse_duration(s).ok_or_else(|| {
                    UsageError(format!("--grace {s:?} is not a duration (try 1h, 30m, 0)"))
                })?),
            };
            require_project(cli)?;
            let req = engine::gc::GcRequest {
                dry_run: *dry_run,
                temporaries: *temporaries,
                keep: *keep,
                max_size,
                grace,
            };
            let r = engine::gc::run(&project_dir(cli), cli.file.as_deref(), &req, &ui)?;
            show(cli, &r, false)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Du => {
            require_project(cli)?;
            let project = open(cli)?;
            let r = engine::du::du(&project)?;
            if cli.json {
                print_json(&serde_json::to_value(&r)?);
            } else {
                println!("{:<14} {:<26} {:>10}  retention", "node", "output", "size");
                for n in &r.nodes {
                    if !n.built {
                        println!("{:<14} {:<26} {:>10}", n.name, "(not built)", "");
                    } else if let (Some(files), Some(bytes)) = (n.source_files, n.source_bytes) {
                        println!(
                            "{:<14} {:<26} {:>10}  source",
                            n.name,
                            format!("{files} files"),
                            report::size(bytes)
                        );
                    }
                    for o in &n.outputs {
                        let ret = if o.collected {
                            format!("{} (collected)", o.retention)
                        } else {
                            o.retention.clone()
                        };
                        println!(
                            "{:<14} {:<26} {:>10}  {ret}",
                            n.name,
                            o.name,
                            report::size(o.bytes)
                        );
                    }
                }
                println!();
                println!(
                    "cache total:                     {}",
                    report::size(r.cache_bytes)
                );
                println!(
                    "reclaimable by `pai gc`:         {}",
                    report::size(r.reclaimable_bytes)
                );
                println!(
                    "more with `pai gc --temporaries`: {}",
                    report::size(r.temporary_bytes)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Graph { format } => {
            let project = open(cli)?;
            let f = match format {
                GraphFormat::Dot => "dot",
                GraphFormat::Mermaid => "mermaid",
            };
            let text = graph::render(&project.pipeline, f);
            if cli.json {
                let nodes: Vec<_> = project
                    .pipeline
                    .nodes
                    .iter()
                    .map(|n| json!({"name": n.name, "kind": n.kind(), "inputs": n.inputs}))
                    .collect();
                print_json(&json!({ "nodes": nodes, "text": text }));
            } else {
                print!("{text}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Path { node, output } => {
            let project = open(cli)?;
            let idx = project.pipeline.node(node)?;
            let n = &project.pipeline.nodes[idx];
            let path = if n.step.is_source() {
                let dir = project.dir.join(n.params.str("path")?);
                match output {
                    Some(o) => dir.join(o),
                    None => dir,
                }
            } else {
                let key = project.store.read_ref(node).with_context(|| {
                    format!("node `{node}` has not been built yet; run `pai build {node}`")
                })?;
                let rec = project
                    .store
                    .record(&key)
                    .with_context(|| format!("the record of `{node}` is missing; rebuild it"))?;
                let dir = project.store.out_dir(node);
                match output {
                    None => dir,
                    Some(o) => {
                        if !rec.live_outputs().any(|x| &x.name == o) {
                            let names: Vec<&str> =
                                rec.live_outputs().map(|x| x.name.as_str()).collect();
                            bail!(UsageError(format!(
                                "node `{node}` has no output `{o}`; its outputs are: {}",
                                names.join(", ")
                            )));
                        }
                        dir.join(o)
                    }
                }
            };
            let shown = absolute(&path);
            if cli.json {
                print_json(&json!({ "path": shown }));
            } else {
                println!("{}", shown.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { repair } => {
            let store = store_for(cli)?;
            let _lock = lock::acquire(&store.root, "verify", &|m| ui.message(m))?;
            let r = verify::verify(&store, *repair)?;
            if cli.json {
                print_json(&serde_json::to_value(&r)?);
            } else {
                println!(
                    "checked {} objects ({})",
                    r.objects_checked,
                    report::size(r.bytes_checked)
                );
                // "(deleted)" only where the delete worked.
                let fate = |path: &str| {
                    if !*repair {
                        ""
                    } else if r.repair_failed.iter().any(|f| f.starts_with(path)) {
                        " (NOT deleted: see below)"
                    } else {
                        " (deleted)"
                    }
                };
                for h in &r.corrupt_objects {
                    let path = store.object_path(h).display().to_string();
                    println!("corrupt object {h}{}", fate(&path));
                }
                for h in &r.missing_objects {
                    println!(
                        "missing object {h} (a current build needs it; `pai build` rebuilds it)"
                    );
                }
                for p in &r.bad_records {
                    println!("unreadable record {p}{}", fate(p));
                }
                for n in &r.dangling_refs {
                    println!("ref of `{n}` names a missing record (`pai build` rebuilds it)");
                }
                for n in &r.bad_refs {
                    let (view, node) = n.split_once(':').unwrap_or((pai::store::MAIN_VIEW, n));
                    let path = pai::store::Store::new(store.root.clone(), view)
                        .refs_dir()
                        .join(node);
                    let path = path.display().to_string();
                    println!(
                        "unreadable ref of `{n}` (empty or not a build key){}",
                        match fate(&path) {
                            " (deleted)" => " (deleted; `pai build` rebuilds the node)",
                            f => f,
                        }
                    );
                }
                for f in &r.repair_failed {
                    println!("could not repair {f}");
                }
                if *repair && !r.repair_ok() {
                    println!(
                        "the repair is incomplete: fix the permissions of what is named above \
                         and run `pai verify --repair` again"
                    );
                } else if r.clean() {
                    println!("the store is valid");
                } else if !repair {
                    println!(
                        "run `pai verify --repair` to drop what is broken; the next build rebuilds it"
                    );
                }
            }
            if *repair && !r.repair_ok() {
                return Ok(ExitCode::from(1));
            }
            Ok(if r.clean() || *repair {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Generate {
            model,
            tokens,
            temperature,
            top_k,
            seed,
            prompt,
        } => {
            let project = open(cli)?;
            let req = steps::generate::Request {
                prompt: prompt.clone(),
                tokens: *tokens,
                sampling: pai::model::Sampling {
                    temperature: *temperature,
                    top_k: *top_k,
                    seed: *seed,
                },
            };
            let r = generate(cli, &project, model.as_deref(), &req)?;
            if cli.json {
                print_json(&serde_json::to_value(&r)?);
            } else if !cli.quiet {
                eprintln!("{r}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor => {
            let r = pai::gpu::doctor::report(cli.adapter.as_deref());
            show(cli, &r, false)?;
            Ok(if r.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Bench {
            what: BenchWhat::Kernels,
            ..
        } => {
            let r = pai::gpu::bench::kernels(cli.adapter.as_deref())?;
            show(cli, &r, true)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            what: BenchWhat::Train,
            runs,
            ..
        } => {
            // The model of the project's pipeline (its first gpt-init and train nodes), else
            // the kinds' defaults.
            let project = open(cli).ok();
            let params = |kind: &str| {
                project.as_ref().and_then(|p| {
                    p.pipeline
                        .nodes
                        .iter()
                        .find(|n| n.kind() == kind)
                        .map(|n| n.params.clone())
                })
            };
            let defaults = |kind: &str| steps::default_params(steps::find(kind).expect(kind));
            let (cfg, batch) = steps::train::model_shape(
                &params("gpt-init").unwrap_or_else(|| defaults("gpt-init")),
                &params("train").unwrap_or_else(|| defaults("train")),
                &params("bpe-tokenizer").unwrap_or_else(|| defaults("bpe-tokenizer")),
            )?;
            let gpu = pai::gpu::Gpu::new(cli.adapter.as_deref())?;
            let r = pai::model::bench::train(&gpu, cfg, batch, (*runs).max(1), 1)?;
            show(cli, &r, true)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            what: BenchWhat::Quant,
            ..
        } => {
            let r = pai::model::quant_bench::quant(cli.adapter.as_deref())?;
            show(cli, &r, false)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            what: BenchWhat::Engine,
            files,
            bytes,
            runs,
        } => {
            let bytes = report::parse_size(bytes).ok_or_else(|| {
                UsageError(format!("--bytes {bytes:?} is not a size (try 1G, 200M)"))
            })?;
            let r = engine::bench::engine(
                &project_dir(cli),
                cli.file.as_deref(),
                *files,
                bytes,
                *runs,
                &ui,
            )?;
            show(cli, &r, false)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `pai generate`: the node's current build and its tokenizer, text streamed to stdout (to
/// stderr with --json).
fn generate(
    cli: &Cli,
    project: &Project,
    model: Option<&str>,
    req: &steps::generate::Request,
) -> Result<steps::generate::Report> {
    let node = match model {
        Some(m) => m.to_string(),
        None => project.pipeline.default.clone().ok_or_else(|| {
            UsageError("the pipeline has no default target; name a model with --model NODE".into())
        })?,
    };
    let kind = project.pipeline.nodes[project.pipeline.node(&node)?].kind();
    if !steps::models::MODEL_KINDS.contains(&kind) {
        bail!(UsageError(format!(
            "`{node}` is a {kind} node, not a model; pass --model with a train, export or quantize node"
        )));
    }
    let built = engine::built_node(project, &node)?;
    let tokenizer = if built.kind == "export" {
        built.read("tokenizer.json")?
    } else {
        let t = engine::upstream_of_kind(project, &node, "bpe-tokenizer")
            .with_context(|| format!("no bpe-tokenizer node is upstream of `{node}`"))?;
        engine::built_node(project, &t)?.read("tokenizer.json")?
    };
    let gpu = pai::gpu::Gpu::new(cli.adapter.as_deref())?;
    let m = steps::models::load(&gpu, &built.kind, "best", &|f| built.read(f))
        .with_context(|| format!("reading the model of `{node}`"))?;
    use std::io::Write;
    let json = cli.json;
    let mut emit = |s: &str| -> Result<()> {
        if json {
            eprint!("{s}");
            std::io::stderr().flush()?;
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(s.as_bytes())?;
            o.flush()?;
        }
        Ok(())
    };
    let r = steps::generate::run(&gpu, &node, &m, &tokenizer, req, &mut emit, &|w| {
        eprintln!("{w}")
    })?;
    if json {
        eprintln!();
    } else {
        println!();
    }
    Ok(r)
}

/// The store of the project folder, for commands that need no pipeline file.
fn store_for(cli: &Cli) -> Result<pai::store::Store> {
    require_project(cli)?;
    Ok(engine::store_at(&project_dir(cli), cli.file.as_deref()))
}

/// Refuses a folder that is not a project (no pipeline file) before
/// anything is created there: `pai -C typo gc` must not make `typo/cache`.
fn require_project(cli: &Cli) -> Result<()> {
    let dir = project_dir(cli);
    let file = engine::pipeline_path(&dir, cli.file.as_deref());
    if !dir.is_dir() {
        return Err(UsageError(format!(
            "{}: no such folder; give a project folder (one with a {}) with -C DIR",
            dir.display(),
            cli.file
                .as_deref()
                .unwrap_or(Path::new("Pipeline.toml"))
                .display()
        ))
        .into());
    }
    if !file.is_file() {
        return Err(UsageError(format!(
            "{} is not a pai project: no pipeline file {}; run pai in a folder with a \
             Pipeline.toml, or give one with -C DIR or -f FILE",
            absolute(&dir).display(),
            file.display()
        ))
        .into());
    }
    Ok(())
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn kinds_json() -> serde_json::Value {
    let kinds: Vec<_> = steps::registry()
        .iter()
        .map(|s| {
            let params: Vec<_> = s
                .params()
                .iter()
                .map(|p| {
                    json!({
                        "name": p.name, "type": p.ty, "default": p.default.value(),
                        "required": p.default.value().is_none(), "doc": p.doc, "min": p.min, "max": p.max,
                    })
                })
                .collect();
            let inputs = match s.inputs() {
                steps::Inputs::Slots(slots) => serde_json::to_value(slots).unwrap_or_default(),
                steps::Inputs::Any => json!("any"),
            };
            let outputs = s.outputs(&steps::default_params(s)).map(|o| serde_json::to_value(o).unwrap_or_default()).ok();
            json!({
                "kind": s.kind(), "version": s.version(), "doc": s.doc(), "gpu": s.uses_gpu(&steps::default_params(s)),
                "params": params, "inputs": inputs, "outputs": outputs,
            })
        })
        .collect();
    json!({ "kinds": kinds })
}
