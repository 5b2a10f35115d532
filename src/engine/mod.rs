//! The build engine: action keys, what is stale and why, and the scheduler.
//! It knows node kinds only through `steps::Kind`, and nothing of tokenizers
//! or models.
//!
//! - [`project`]: a project folder, its pipeline file, its store and views;
//! - [`key`]: what goes into a node's action key, and the key;
//! - [`plan`]: what a build would do with each node, and why (`status`);
//! - [`explain`]: what changed in one node's key;
//! - `build`: the scheduler; [`source`]: source folders and their listing;
//! - [`built`]: a node's current build as files;
//! - [`du`], [`space`], [`gc`], [`bench`]: the commands of those names.

pub mod bench;
pub mod build;
pub mod built;
pub mod du;
pub mod explain;
pub mod gc;
pub mod key;
pub mod plan;
pub mod project;
pub mod remote;
pub mod source;
pub mod space;

pub use build::{BuildOptions, BuildRun, NodeReport, NodeStatus, build};
pub use built::{BuiltNode, NodePath, built_node, node_path, upstream_of_kind};
pub use explain::{Explanation, explain};
pub use key::{ENGINE_VERSION, KeyParts, kind_version, parts_of};
pub use plan::{
    Action, Decision, DryRun, NodeState, StatusReport, decide, dry_run, reasons, source_record,
    status, status_report,
};
pub use project::{
    Project, pending_keys, pipeline_path, require_project, store_at, store_for, undeclared_refs,
    view_file, view_file_rel, view_name,
};
