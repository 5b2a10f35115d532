//! The `pai` command line: parse, call the library, print.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

use std::sync::Arc;

use pai::engine::{self, BuildOptions, Project};
use pai::remote::{self, Cache, Mode};
use pai::report::{self, Ui};
use pai::spec::UsageError;
use pai::store::verify;
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
    /// GPU adapter to use: a substring of its name, or a backend (vulkan, gl);
    /// `cpu` (exactly, any case) is pai's native CPU implementation instead of
    /// wgpu: no GPU driver needed, opt-in only, the same node keys
    /// [default: the best GPU, else a CPU adapter (lavapipe)].
    #[arg(long, value_name = "NAME", global = true, env = "PAI_ADAPTER")]
    adapter: Option<String>,
    /// The shared remote cache: s3://BUCKET/PREFIX or file:///PATH [default: `url` in the
    /// pipeline file's [remote] table].
    #[arg(long = "remote", value_name = "URL", global = true, env = "PAI_REMOTE")]
    remote_url: Option<String>,
    /// The S3-compatible server's address [default: `endpoint` in [remote], else AWS].
    #[arg(
        long = "remote-endpoint",
        value_name = "URL",
        global = true,
        env = "AWS_ENDPOINT_URL"
    )]
    remote_endpoint: Option<String>,
    /// The bucket's region [default: `region` in [remote], else us-east-1].
    #[arg(
        long = "remote-region",
        value_name = "REGION",
        global = true,
        env = "AWS_REGION"
    )]
    remote_region: Option<String>,
    /// Seconds a remote request may take before the remote counts as down for the run.
    #[arg(
        long = "remote-timeout",
        value_name = "SECS",
        global = true,
        env = "PAI_REMOTE_TIMEOUT",
        default_value_t = 5
    )]
    remote_timeout: u64,
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
        /// Leave the shared remote cache alone in this run.
        #[arg(long, conflicts_with = "remote_read_only")]
        no_remote: bool,
        /// Download from the remote cache, upload nothing (e.g. for pull requests in CI).
        #[arg(long)]
        remote_read_only: bool,
    },
    /// Send the current builds of targets (and what they need) to the remote cache.
    Push { targets: Vec<String> },
    /// Bring targets' builds (and what they need) from the remote cache; run nothing but sources.
    Pull { targets: Vec<String> },
    /// The shared remote cache.
    Remote {
        #[command(subcommand)]
        what: RemoteCommand,
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
    /// The same table projected from first principles: for the pipeline's own model (beside
    /// what `du` measures), or for a model of N parameters (beside the space study's figures).
    Space {
        /// Parameters of the model to project, e.g. 124M, 1.5B, 75e9 [default: the pipeline's].
        #[arg(long, value_name = "N")]
        params: Option<String>,
    },
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
    /// The GPU adapters found, the one pai uses, and how to get one if none; beside them the
    /// native CPU adapter (opt-in: --adapter cpu) with its measured speed.
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

#[derive(Subcommand)]
enum RemoteCommand {
    /// What the remote holds for the pipeline's nodes (or TARGETs and what they need).
    Status { targets: Vec<String> },
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
    /// reference (`--runs` steps are timed); with `--adapter cpu`, the native CPU adapter
    /// beside the default wgpu adapter, in the same run.
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
        Command::Kinds { markdown: true } => {
            print!("{}", steps::kinds_markdown());
            Ok(ExitCode::SUCCESS)
        }
        Command::Kinds { markdown: false } => {
            show(cli, &steps::kinds::report(), false)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Build {
            targets,
            dry_run,
            no_remote,
            remote_read_only,
        } => {
            let project = open(cli)?;
            let targets = project.targets(targets)?;
            if *dry_run {
                show(cli, &engine::dry_run(&project, &targets, !cli.quiet), false)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut opts = BuildOptions::new(cli.jobs, cli.adapter.clone());
            if !*no_remote {
                let mode = if *remote_read_only {
                    Mode::ReadOnly
                } else {
                    Mode::ReadWrite
                };
                opts.remote = remote_cache(cli, &project, mode)?;
            }
            let r = engine::build::run(&project, &targets, &opts, &ui)?;
            show(cli, &r, false)?;
            if let Some(e) = r.error() {
                eprintln!("error: {e}");
            }
            Ok(ExitCode::from(r.exit_code()))
        }
        Command::Push { targets } => {
            let project = open(cli)?;
            let targets = project.targets(targets)?;
            let cache = require_remote(cli, &project, Mode::ReadWrite)?;
            let r = engine::remote::push(&project, &targets, &cache, &ui)?;
            show(cli, &r, true)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Pull { targets } => {
            let project = open(cli)?;
            let targets = project.targets(targets)?;
            let mut opts = BuildOptions::new(cli.jobs, cli.adapter.clone());
            opts.remote = Some(require_remote(cli, &project, Mode::ReadOnly)?);
            let r = engine::remote::pull(&project, &targets, &opts, &ui)?;
            show(cli, &r, true)?;
            Ok(ExitCode::from(if r.ok { 0 } else { 1 }))
        }
        Command::Remote {
            what: RemoteCommand::Status { targets },
        } => {
            let project = open(cli)?;
            let targets = if targets.is_empty() {
                (0..project.pipeline.nodes.len()).collect()
            } else {
                project.targets(targets)?
            };
            let cache = require_remote(cli, &project, Mode::ReadOnly)?;
            let r = engine::remote::status(&project, &targets, &cache)?;
            show(cli, &r, false)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { targets } => {
            let project = open(cli)?;
            let targets = project.targets(targets)?;
            let r = engine::status_report(&project, &targets);
            show(cli, &r, false)?;
            if !cli.json && r.up_to_date() {
                eprintln!("everything is up to date");
            }
            Ok(ExitCode::from(r.exit_code()))
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
            engine::require_project(&project_dir(cli), cli.file.as_deref())?;
            let req = engine::gc::GcRequest {
                dry_run: *dry_run,
                temporaries: *temporaries,
                keep: *keep,
                max_size,
                grace,
            };
            let r = engine::gc::run(&project_dir(cli), cli.file.as_deref(), &req, &ui)?;
            show(cli, &r, true)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Space { params } => {
            let params = match params {
                None => None,
                Some(s) => Some(engine::space::parse_params(s).ok_or_else(|| {
                    UsageError(format!(
                        "--params {s:?} is not a number of parameters (try 124M, 1.5B, 75e9)"
                    ))
                })?),
            };
            engine::require_project(&project_dir(cli), cli.file.as_deref())?;
            let project = open(cli)?;
            let r = engine::space::space(&project, params)?;
            show(cli, &r, false)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Du => {
            engine::require_project(&project_dir(cli), cli.file.as_deref())?;
            let project = open(cli)?;
            let r = engine::du::du(&project)?;
            show(cli, &r, true)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Graph { format } => {
            let project = open(cli)?;
            let f = match format {
                GraphFormat::Dot => "dot",
                GraphFormat::Mermaid => "mermaid",
            };
            show(cli, &graph::report(&project.pipeline, f), false)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Path { node, output } => {
            let project = open(cli)?;
            show(
                cli,
                &engine::node_path(&project, node, output.as_deref())?,
                true,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { repair } => {
            let store = engine::store_for(&project_dir(cli), cli.file.as_deref())?;
            let r = verify::run(store, *repair, &ui)?;
            show(cli, &r, false)?;
            Ok(ExitCode::from(r.exit_code()))
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
            let runs = (*runs).max(1);
            if !pai::gpu::native::is_native(cli.adapter.as_deref()) {
                let gpu = pai::gpu::Gpu::new(cli.adapter.as_deref())?;
                let r = pai::model::bench::train(&gpu, cfg, batch, runs, 1)?;
                show(cli, &r, true)?;
                return Ok(ExitCode::SUCCESS);
            }
            // The native adapter first (before any wgpu device exists), then the default wgpu
            // adapter and the f64 reference in the same run.
            let n = pai::model::bench_native::train(cfg, batch, runs)?;
            match pai::gpu::Gpu::new(None) {
                Ok(gpu) => {
                    let mut r = pai::model::bench::train(&gpu, cfg, batch, runs, 1)?;
                    r.native = Some(n.compare(Some(r.tokens_per_s), r.baseline.tokens_per_s));
                    show(cli, &r, true)?;
                }
                Err(e) => {
                    eprintln!("no wgpu adapter to compare with: {e:#}");
                    let base = pai::model::bench_native::baseline_tokens_per_s(cfg, batch)?;
                    show(cli, &n.compare(None, base), true)?;
                }
            }
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

/// The remote cache the command line, the environment and the pipeline file's
/// `[remote]` table name (in that order of precedence), or `None`. Credentials
/// come from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (`AWS_SESSION_TOKEN`),
/// else from the shared credentials file's profile (`AWS_PROFILE`, default
/// `default`; `AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`). They are
/// read here, by the CLI, and never as flags (a flag shows in `ps`).
fn remote_cache(cli: &Cli, project: &Project, mode: Mode) -> Result<Option<Arc<Cache>>> {
    let spec = &project.pipeline.remote;
    let Some(url) = cli.remote_url.clone().or_else(|| spec.url.clone()) else {
        return Ok(None);
    };
    pai::spec::remote::check_url(&url).map_err(|m| UsageError(format!("remote cache: {m}")))?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let credentials = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(key_id), Some(secret)) => Some(remote::Credentials {
            key_id,
            secret,
            token: env("AWS_SESSION_TOKEN"),
        }),
        (Some(_), None) | (None, Some(_)) => {
            bail!(UsageError(
                "remote cache: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together; set both"
                    .into()
            ))
        }
        (None, None) => {
            let file = env("AWS_SHARED_CREDENTIALS_FILE")
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")));
            let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
            file.and_then(|f| std::fs::read_to_string(f).ok())
                .and_then(|text| remote::profile_credentials(&text, &profile))
        }
    };
    let cfg = remote::RemoteConfig {
        url,
        endpoint: cli
            .remote_endpoint
            .clone()
            .or_else(|| spec.endpoint.clone()),
        region: cli
            .remote_region
            .clone()
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or_else(|| spec.region.clone()),
        credentials,
        timeout_secs: cli.remote_timeout,
    };
    Ok(Some(Arc::new(Cache::new(remote::open(&cfg)?, mode))))
}

fn require_remote(cli: &Cli, project: &Project, mode: Mode) -> Result<Arc<Cache>> {
    remote_cache(cli, project, mode)?.ok_or_else(|| {
        UsageError(format!(
            "no remote cache: add a [remote] table with `url = \"s3://BUCKET/PREFIX\"` to {}, \
             or set PAI_REMOTE",
            project.pipeline.path.display()
        ))
        .into()
    })
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
    // The native CPU adapter opens no wgpu device.
    let gpu = if pai::gpu::native::is_native(cli.adapter.as_deref()) {
        None
    } else {
        Some(pai::gpu::Gpu::new(cli.adapter.as_deref())?)
    };
    let dev = gpu
        .as_ref()
        .map_or(pai::gpu::Device::Native, pai::gpu::Device::Wgpu);
    let m = steps::models::load(dev, &built.kind, "best", &|f| built.read(f))
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
    let r = steps::generate::run(dev, &node, &m, &tokenizer, req, &mut emit, &|w| {
        eprintln!("{w}")
    })?;
    if json {
        eprintln!();
    } else {
        println!();
    }
    Ok(r)
}
