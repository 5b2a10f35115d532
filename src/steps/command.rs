//! `command`: the escape hatch, like a make rule: runs a shell command.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::{
    Default, GpuUse, InputView, Inputs, Kind, OutputDecl, ParamDecl, ParamType, Params, StepCtx,
};
use crate::process;

static PARAMS: &[ParamDecl] = &[
    ParamDecl::new(
        "run",
        ParamType::Str,
        Default::Required,
        "Shell command (`sh -c`), run in the project folder, in a process group of its own. It \
         writes its outputs into `$PAI_OUT`; each input's folder is in `$PAI_IN_<NAME>` (name \
         upper-cased, `-` as `_`): for a `source`, a folder of symbolic links to exactly the files \
         the source selects (`find -L` walks it; `cp` and `cat` read through the links). When the \
         shell exits, whatever it left running in its group is killed, and its outputs are \
         copied into the store, so a process that outlived it cannot change them.",
    ),
    ParamDecl::new(
        "outputs",
        ParamType::StrList,
        Default::Required,
        "Files (or globs) the command writes into `$PAI_OUT`; writing any other file is an error.",
    ),
    ParamDecl::new(
        "temporary",
        ParamType::StrList,
        Default::StrList(&[]),
        "Those of `outputs` that are temporary: optional, and deleted by `pai gc --temporaries`.",
    ),
    ParamDecl::new(
        "gpu",
        ParamType::Bool,
        Default::Bool(false),
        "The command uses the GPU: it takes the single GPU slot, so no other GPU node runs beside it.",
    ),
];

pub fn env_name(node: &str) -> String {
    format!("PAI_IN_{}", node.to_uppercase().replace('-', "_"))
}

pub static COMMAND: Kind = Kind {
    name: "command",
    // 2: a source input is a folder of exactly its selected files.
    version: 2,
    doc: "Runs a shell command. Its key covers the command text and its inputs' contents, not the \
         environment or programs it calls. Its stdout and stderr go to `command.log` in the node's \
         work folder (`cache/work/<key>/`). A non-zero exit fails the node, keeps none of its \
         outputs, and shows the log's last lines and its path; the log stays until the node \
         builds or `pai gc` drops the work folder of a key no node builds. Stopping `pai build` \
         (Ctrl-C, SIGTERM) ends every running command's group: SIGTERM, then SIGKILL after 2 s.",
    params: PARAMS,
    inputs: Inputs::Any,
    outputs,
    gpu: GpuUse::IfParam("gpu"),
    validate,
    reads_temporaries: true,
    run,
    ..Kind::PLAIN
};

fn outputs(params: &Params) -> Result<Vec<OutputDecl>> {
    let temporary = params.list("temporary")?;
    Ok(params
        .list("outputs")?
        .iter()
        .map(|o| {
            if temporary.contains(o) {
                OutputDecl::temporary(o, "declared temporary by the pipeline")
            } else {
                OutputDecl {
                    required: !OutputDecl::is_glob(o),
                    ..OutputDecl::keep(o, "declared by the pipeline")
                }
            }
        })
        .collect())
}

fn validate(params: &Params) -> std::result::Result<(), String> {
    let outs = params.list("outputs").map_err(|e| e.to_string())?;
    if outs.is_empty() {
        return Err(
            "`outputs` is empty: a command node must declare at least one output file".into(),
        );
    }
    for t in params.list("temporary").map_err(|e| e.to_string())? {
        if !outs.contains(t) {
            return Err(format!(
                "`temporary` names {t:?}, which is not in `outputs`"
            ));
        }
    }
    for o in outs {
        if o.is_empty()
            || o.starts_with('/')
            || o.split('/').any(|c| c.is_empty() || c.starts_with('.'))
        {
            return Err(format!(
                "output {o:?} must be a relative path inside $PAI_OUT, with no part starting with `.`"
            ));
        }
        if OutputDecl::is_glob(o)
            && let Err(e) = globset::Glob::new(o)
        {
            return Err(format!(
                "output {o:?} is not a valid glob ({e}): close its `[` or `{{`, or escape the \
                 character with `\\`"
            ));
        }
    }
    Ok(())
}

/// The log of a command's stdout and stderr, in its work folder: kept when
/// the node fails (the failure names it), removed with the folder when the
/// node commits, and by `gc` once no pipeline file builds that key.
pub const LOG: &str = "command.log";

/// What a failure shows of the log: its last lines, each cut short.
const TAIL_LINES: usize = 30;
const TAIL_LINE_CHARS: usize = 240;
const TAIL_BYTES: u64 = 4096;

/// The folder a command runs in, beside the node's output folder (pai's own
/// scratch space under `cache/tmp/`): `out/` is its `$PAI_OUT`, `in/<node>/`
/// the selected files of a source input, and `group` its process group.
/// Removed when the run ends; a killed pai's is removed by the next build.
pub fn run_folder(out_dir: &Path) -> PathBuf {
    let mut name = out_dir.file_name().unwrap_or_default().to_os_string();
    name.push(RUN_FOLDER_SUFFIX);
    out_dir.with_file_name(name)
}

const RUN_FOLDER_SUFFIX: &str = ".command";

/// Whether `path` is a command's run folder (something outside pai, such as a
/// process that left the command's group, may still be writing there).
pub fn is_run_folder(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(RUN_FOLDER_SUFFIX))
}

struct RunFolder(PathBuf);

impl Drop for RunFolder {
    fn drop(&mut self) {
        crate::store::remove_entry(&self.0).ok();
    }
}

fn run(ctx: &StepCtx) -> Result<()> {
    let script = ctx.params.str("run")?;
    // The engine's folders are absolute (`Project::open`), so they stay right
    // in the project folder the command runs in.
    let folder = RunFolder(run_folder(ctx.out_dir));
    crate::store::remove_entry(&folder.0)
        .with_context(|| format!("removing {}", folder.0.display()))?;
    let out = folder.0.join("out");
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).current_dir(ctx.project_dir);
    cmd.env("PAI_OUT", &out);
    let mut links = HashSet::new();
    for input in ctx.inputs {
        let dir = if input.kind == "source" {
            selected_files(&folder.0.join("in").join(&input.node), input, &mut links)?
        } else {
            input.dir.clone()
        };
        cmd.env(env_name(&input.node), dir);
    }
    // A fresh file: a process of an earlier, killed run may still hold the
    // old one open.
    let log_path = ctx.work_dir.join(LOG);
    crate::store::remove_entry(&log_path)
        .with_context(|| format!("removing {}", log_path.display()))?;
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let log2 = log
        .try_clone()
        .with_context(|| format!("opening {}", log_path.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2));
    let group = process::spawn(&mut cmd, &folder.0, &out)?;
    drop(cmd); // pai's copies of the log's descriptors
    let status = group.wait()?;
    if !status.success() {
        let code = status
            .code()
            .map(|c| format!("exit code {c}"))
            .unwrap_or_else(|| "a signal".into());
        bail!("command failed with {code}: {script}\n{}", tail(&log_path));
    }
    take_outputs(&out, ctx.out_dir, &links)
}

/// A folder holding exactly the files a source selected (symbolic links to
/// them, under their relative names), so a command cannot read a file the
/// source's globs leave out: its edits are not in the key. Each link's
/// (device, inode) goes into `links`.
fn selected_files(
    dir: &Path,
    input: &InputView,
    links: &mut HashSet<(u64, u64)>,
) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for f in &input.files {
        let link = dir.join(&f.name);
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        // A source's files are under its canonical (absolute) root.
        std::os::unix::fs::symlink(&f.path, &link)
            .with_context(|| format!("linking {} to {}", link.display(), f.path.display()))?;
        let m =
            fs::symlink_metadata(&link).with_context(|| format!("reading {}", link.display()))?;
        links.insert((m.dev(), m.ino()));
    }
    Ok(dir.to_path_buf())
}

/// Copies what the command wrote into the node's output folder. The copies
/// are new files no other process has seen: a background process that
/// outlived the command (or escaped its group) and still holds an output
/// open, or writes to `$PAI_OUT` by name, changes only the old ones.
///
/// A hard link of one of the links to a source's files (`ln $PAI_IN_SRC/a
/// $PAI_OUT/`: `ln` links the link itself) is taken as the file it points at;
/// any other symbolic link is refused.
fn take_outputs(from: &Path, to: &Path, links: &HashSet<(u64, u64)>) -> Result<()> {
    for e in walkdir::WalkDir::new(from).min_depth(1) {
        let e = e.with_context(|| format!("reading {}", from.display()))?;
        let rel = e.path().strip_prefix(from).unwrap_or(e.path());
        let dst = to.join(rel);
        let t = e.file_type();
        if t.is_dir() {
            fs::create_dir_all(&dst).with_context(|| format!("creating {}", dst.display()))?;
        } else if t.is_file()
            || t.is_symlink()
                && fs::symlink_metadata(e.path()).is_ok_and(|m| links.contains(&(m.dev(), m.ino())))
        {
            fs::copy(e.path(), &dst).with_context(|| format!("copying {}", e.path().display()))?;
        } else {
            let what = fs::symlink_metadata(e.path())
                .map(|m| crate::store::file_kind(&m))
                .unwrap_or("not a regular file");
            bail!(
                "`{}` in $PAI_OUT is {what}; outputs must be regular files the command wrote \
                 (copy the file, e.g. `cp -L`, instead of linking it)",
                rel.display()
            );
        }
    }
    Ok(())
}

/// The last lines of a failed command's log, each cut short, and where the
/// whole log is; or that it printed nothing (then the log is dropped).
fn tail(log: &Path) -> String {
    let len = fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        fs::remove_file(log).ok();
        return "(it printed nothing)".into();
    }
    let mut bytes = Vec::new();
    let read = File::open(log).and_then(|mut f| {
        f.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))?;
        f.take(TAIL_BYTES).read_to_end(&mut bytes)
    });
    if read.is_err() {
        return format!("(its output is in {})", log.display());
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    // The first line read may be the end of a longer one: shown, cut.
    let from = lines.len().saturating_sub(TAIL_LINES);
    lines.drain(..from);
    let mut s = format!(
        "--- the last lines of its output; all of it is in {} ---\n",
        log.display()
    );
    for l in lines {
        if l.chars().count() > TAIL_LINE_CHARS {
            s.extend(l.chars().take(TAIL_LINE_CHARS));
            s.push_str(" …(cut)");
        } else {
            s.push_str(l);
        }
        s.push('\n');
    }
    s.trim_end().to_string()
}
