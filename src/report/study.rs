//! The space study's table: one row per artifact class in the study's order
//! (raw text … 4-bit model), its bytes, where it lives, its retention, and
//! the study's three totals. `pai du` fills it from the store (measured),
//! `pai space` from first principles (projected); both print it here.

use std::fmt;

use serde::Serialize;

use super::size;
use crate::steps::Artifact;

/// One row: an artifact class and the bytes it takes.
#[derive(Serialize, Debug, Clone)]
pub struct StudyRow {
    pub artifact: Artifact,
    pub label: &'static str,
    pub bytes: u64,
    /// Files in the row (0 where it is a projection without files).
    pub files: usize,
    /// Where it lives: `node/output` names, or how it was projected.
    pub held_by: Vec<String>,
    /// `keep`, `temporary`, `log`, `mixed`, or `-` (not in the store).
    pub retention: String,
    /// The space study's own estimate for the row (a ~75 B model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub study: Option<&'static str>,
}

/// The study's three totals.
#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct StudyTotals {
    /// Right after training: every row.
    pub after_training: u64,
    /// After `pai gc --temporaries`: without temporary and log outputs.
    pub after_cleanup: u64,
    /// The usable model alone: the 8-bit and 4-bit rows.
    pub usable_model: u64,
}

/// The rows in the study's order, and the totals (objects that several rows
/// share counted once).
#[derive(Serialize, Debug, Clone)]
pub struct StudyTable {
    pub rows: Vec<StudyRow>,
    pub totals: StudyTotals,
}

/// The study's figures for the totals of a ~75 B model.
pub const STUDY_TOTALS: [(&str, &str); 3] = [
    ("after training", "~455–805 GB"),
    ("after 8-bit", "~135–230 GB"),
    ("after 4-bit", "~65–125 GB"),
];

impl StudyTable {
    /// Rows for every artifact class, in order, from a fill function.
    pub fn empty() -> Vec<StudyRow> {
        Artifact::ALL
            .iter()
            .map(|&a| StudyRow {
                artifact: a,
                label: a.label(),
                bytes: 0,
                files: 0,
                held_by: Vec::new(),
                retention: "-".into(),
                study: a.study(),
            })
            .collect()
    }

    pub fn row(&self, a: Artifact) -> &StudyRow {
        self.rows
            .iter()
            .find(|r| r.artifact == a)
            .expect("every artifact has a row")
    }
}

/// A bar of up to `width` cells for `bytes` against the largest row's bytes;
/// a row that is not empty gets at least one cell.
pub fn bar(bytes: u64, max: u64, width: usize) -> String {
    if bytes == 0 || max == 0 {
        return String::new();
    }
    let cells = ((bytes as f64 / max as f64) * width as f64).round() as usize;
    "█".repeat(cells.clamp(1, width))
}

impl fmt::Display for StudyTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max = self.rows.iter().map(|r| r.bytes).max().unwrap_or(0);
        writeln!(
            f,
            "{:<22} {:>10}  {:<20} {:<10} held by",
            "artifact", "size", "", "retention"
        )?;
        for r in &self.rows {
            if r.artifact == Artifact::Other && r.bytes == 0 {
                continue;
            }
            let held = if r.held_by.is_empty() {
                "(none built)".to_string()
            } else {
                r.held_by.join(", ")
            };
            writeln!(
                f,
                "{:<22} {:>10}  {:<20} {:<10} {held}",
                r.label,
                size(r.bytes),
                bar(r.bytes, max, 20),
                r.retention
            )?;
        }
        writeln!(f)?;
        let t = &self.totals;
        writeln!(
            f,
            "after training (everything):          {:>10}",
            size(t.after_training)
        )?;
        writeln!(
            f,
            "after cleanup (`gc --temporaries`):   {:>10}",
            size(t.after_cleanup)
        )?;
        write!(
            f,
            "the usable model alone (8-bit, 4-bit): {:>9}",
            size(t.usable_model)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_row_and_never_vanish() {
        assert_eq!(bar(100, 100, 20).chars().count(), 20);
        assert_eq!(bar(50, 100, 20).chars().count(), 10);
        assert_eq!(bar(1, 1_000_000, 20).chars().count(), 1);
        assert_eq!(bar(0, 100, 20), "");
    }
}
