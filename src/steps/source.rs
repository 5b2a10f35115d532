//! `source`: a folder of files filtered by globs. The engine hashes it (with
//! the stat cache); it is never run and stores nothing.

use anyhow::{Result, bail};

use super::{Default, Inputs, Kind, OutputDecl, ParamDecl, ParamType, Params, StepCtx};

pub const SOURCE_KIND: &str = "source";

static PARAMS: &[ParamDecl] = &[
    ParamDecl::new(
        "path",
        ParamType::Str,
        Default::Required,
        "Folder to read, relative to the project folder (where Pipeline.toml is, or -C DIR).",
    ),
    ParamDecl::new(
        "include",
        ParamType::StrList,
        Default::StrList(&["**/*"]),
        "Globs (relative to `path`) of the files to take.",
    ),
    ParamDecl::new(
        "exclude",
        ParamType::StrList,
        Default::StrList(&[]),
        "Globs of files to leave out, applied after `include`.",
    ),
];

pub static SOURCE: Kind = Kind {
    name: SOURCE_KIND,
    version: 1,
    doc: "Files under a folder, filtered by globs. Its hash is the sorted list of (relative path, \
         BLAKE3 of content); nothing is stored. Hidden files and folders (names starting with `.`: `.git`, editor lock files) are skipped, and so is the store's own folder.",
    params: PARAMS,
    inputs: Inputs::Slots(&[]),
    outputs,
    validate,
    source: true,
    run,
    ..Kind::PLAIN
};

fn outputs(_params: &Params) -> Result<Vec<OutputDecl>> {
    Ok(Vec::new())
}

fn validate(params: &Params) -> std::result::Result<(), String> {
    for key in ["include", "exclude"] {
        for g in params.list(key).map_err(|e| e.to_string())? {
            if let Err(e) = globset::Glob::new(g) {
                return Err(format!("`{key}` has a bad glob {g:?}: {e}"));
            }
        }
    }
    Ok(())
}

fn run(_ctx: &StepCtx) -> Result<()> {
    bail!("a source node is hashed by the engine, not run")
}
