//! pai: grow a small language model from a text corpus as a content-addressed,
//! incremental build. See DESIGN in the README for the layout.
pub mod gpu;
