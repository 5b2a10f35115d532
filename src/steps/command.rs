//! `command`: the escape hatch, like a make rule: runs a shell command.

use std::process::Stdio;

use anyhow::{Context, Result, bail};

use super::{Default, GpuUse, Inputs, Kind, OutputDecl, ParamDecl, ParamType, Params, StepCtx};

static PARAMS: &[ParamDecl] = &[
    ParamDecl::new(
        "run",
        ParamType::Str,
        Default::Required,
        "Shell command (`sh -c`), run in the project folder. It writes its outputs into `$PAI_OUT`; \
         each input's folder is in `$PAI_IN_<NAME>` (name upper-cased, `-` as `_`).",
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
    version: 1,
    doc: "Runs a shell command. Its key covers the command text and its inputs' contents, not the \
         environment or programs it calls. A non-zero exit fails the node, keeps nothing of it, and \
         shows the command's stderr.",
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
                    required: !o.contains(['*', '?', '[']),
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

fn run(ctx: &StepCtx) -> Result<()> {
    let script = ctx.params.str("run")?;
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(script).current_dir(ctx.project_dir);
    cmd.env("PAI_OUT", ctx.out_dir);
    for input in ctx.inputs {
        cmd.env(env_name(&input.node), &input.dir);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = cmd.output().context("starting `sh`")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let code = out
            .status
            .code()
            .map(|c| format!("exit code {c}"))
            .unwrap_or_else(|| "a signal".into());
        bail!(
            "command failed with {code}: {script}\n--- stderr ---\n{}",
            tail.join("\n")
        );
    }
    Ok(())
}
