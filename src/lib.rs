//! pai: grow a small language model from a text corpus as a content-addressed,
//! incremental build. `Pipeline.toml` declares the funnel's artifacts as nodes
//! of a DAG; outputs are stored by BLAKE3 under `cache/`; a build reruns only
//! what is stale.
//!
//! Layers, each depending only on those below it: `spec` (the pipeline file),
//! `graph`, `engine` (plan and run), `store` (objects, records, refs), `steps`
//! (one file per node kind), `gpu`, `formats`, `report`.
pub mod engine;
pub mod formats;
pub mod gpu;
pub mod graph;
pub mod model;
pub mod process;
pub mod remote;
pub mod report;
pub mod spec;
pub mod steps;
pub mod store;
