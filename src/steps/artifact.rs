//! The artifact classes of the space study: which row of `pai du` and
//! `pai space` an output file belongs to. Each kind declares it beside each
//! output; the order here is the study's order.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Artifact {
    RawText,
    Tokenized,
    Packed,
    /// The program itself (the study's "Python environment").
    Tool,
    Initialization,
    Logs,
    GradientCheckpoints,
    ValidationSnapshots,
    FinalWeights,
    OptimizerStates,
    Model8Bit,
    Model4Bit,
    /// Outputs of `command` nodes and anything else the study has no row for.
    Other,
}

impl Artifact {
    pub const ALL: [Artifact; 13] = [
        Artifact::RawText,
        Artifact::Tokenized,
        Artifact::Packed,
        Artifact::Tool,
        Artifact::Initialization,
        Artifact::Logs,
        Artifact::GradientCheckpoints,
        Artifact::ValidationSnapshots,
        Artifact::FinalWeights,
        Artifact::OptimizerStates,
        Artifact::Model8Bit,
        Artifact::Model4Bit,
        Artifact::Other,
    ];

    /// The row of a model file in this GGML format: 8-bit, 4-bit, or (f16,
    /// f32) the final weights.
    pub fn of_format(f: crate::formats::ggml::Format) -> Artifact {
        use crate::formats::ggml::Format;
        match f {
            Format::Q8_0 => Artifact::Model8Bit,
            Format::Q4_0 => Artifact::Model4Bit,
            Format::F16 | Format::F32 => Artifact::FinalWeights,
        }
    }

    /// The row's name, as the study writes it.
    pub fn label(self) -> &'static str {
        match self {
            Artifact::RawText => "raw text",
            Artifact::Tokenized => "tokenized",
            Artifact::Packed => "packed",
            Artifact::Tool => "the tool (pai binary)",
            Artifact::Initialization => "initialization",
            Artifact::Logs => "logs",
            Artifact::GradientCheckpoints => "gradient checkpoints",
            Artifact::ValidationSnapshots => "validation snapshots",
            Artifact::FinalWeights => "final weights",
            Artifact::OptimizerStates => "optimizer states",
            Artifact::Model8Bit => "8-bit model",
            Artifact::Model4Bit => "4-bit model",
            Artifact::Other => "other outputs",
        }
    }

    /// The space study's own estimate for this row, for a model of about
    /// 75 B parameters grown from 100 KB of text (`None`: the study gives none).
    pub fn study(self) -> Option<&'static str> {
        Some(match self {
            Artifact::RawText => "100 KB",
            Artifact::Tool => "~5 GB (Python environment)",
            Artifact::GradientCheckpoints => "10–50 GB",
            Artifact::ValidationSnapshots => "50–300 GB",
            Artifact::FinalWeights => "~300 GB",
            Artifact::OptimizerStates => "100–200 GB",
            Artifact::Model8Bit => "80–90 GB",
            Artifact::Model4Bit => "35–45 GB",
            _ => return None,
        })
    }
}
