//! WGSL sources, embedded at compile time. A node kind names the families it dispatches so their
//! text goes into its action key: e.g. `shaders::TRAIN` for training, `shaders::QUANT` for
//! quantization; `shaders::sources(shaders::TRAIN)` gives (name, text) pairs to hash.

/// Every shader family: (name, WGSL source).
pub const SOURCES: &[(&str, &str)] = &[
    ("common", COMMON),
    ("matmul", include_str!("../../shaders/matmul.wgsl")),
    (
        "matmul_vec4",
        include_str!("../../shaders/matmul_vec4.wgsl"),
    ),
    (
        "matmul_tile",
        include_str!("../../shaders/matmul_tile.wgsl"),
    ),
    ("layernorm", include_str!("../../shaders/layernorm.wgsl")),
    ("attention", include_str!("../../shaders/attention.wgsl")),
    (
        "elementwise",
        include_str!("../../shaders/elementwise.wgsl"),
    ),
    ("embedding", include_str!("../../shaders/embedding.wgsl")),
    (
        "crossentropy",
        include_str!("../../shaders/crossentropy.wgsl"),
    ),
    ("optim", include_str!("../../shaders/optim.wgsl")),
    ("quant", include_str!("../../shaders/quant.wgsl")),
];

/// Helpers prepended to every family (linear workgroup ids, NaN).
pub const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// Families a training step dispatches (forward, backward, optimizer).
pub const TRAIN: &[&str] = &[
    "common",
    "matmul",
    "matmul_vec4",
    "matmul_tile",
    "layernorm",
    "attention",
    "elementwise",
    "embedding",
    "crossentropy",
    "optim",
];
/// Families evaluation and generation dispatch (forward and loss only).
pub const EVAL: &[&str] = &[
    "common",
    "matmul",
    "matmul_vec4",
    "matmul_tile",
    "layernorm",
    "attention",
    "elementwise",
    "embedding",
    "crossentropy",
];
/// Families quantization dispatches.
pub const QUANT: &[&str] = &["common", "quant"];

/// The text of one family as compiled: the common helpers followed by the family's file.
pub fn source(family: &str) -> Option<String> {
    let body = SOURCES.iter().find(|(n, _)| *n == family)?.1;
    Some(format!("{COMMON}\n{body}"))
}

/// (name, source) pairs of the given families, in the given order, for action keys.
pub fn sources(families: &[&str]) -> Vec<(&'static str, &'static str)> {
    families
        .iter()
        .filter_map(|f| SOURCES.iter().find(|(n, _)| n == f).copied())
        .collect()
}
