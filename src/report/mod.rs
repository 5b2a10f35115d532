//! What pai shows a person: build lines, progress bars, sizes and tables.

pub mod plot;
pub mod study;

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Human output goes to stderr; `--json` documents go to stdout.
pub struct Ui {
    pub quiet: bool,
    pub verbose: bool,
    multi: Option<MultiProgress>,
}

impl Ui {
    pub fn new(quiet: bool, verbose: bool) -> Ui {
        let tty = std::io::stderr().is_terminal() && !quiet;
        let multi = tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Ui {
            quiet,
            verbose,
            multi,
        }
    }

    fn eprint(&self, line: &str) {
        match &self.multi {
            Some(m) => {
                m.println(line).ok();
            }
            None => eprintln!("{line}"),
        }
    }

    /// One line per node: status, name, time; a failure's error below it.
    pub fn node_line(
        &self,
        name: &str,
        status: &str,
        seconds: f64,
        error: Option<&str>,
        summary: Option<&str>,
    ) {
        let failed = status == "failed";
        if self.quiet && !failed {
            return;
        }
        let time = if status == "skipped" {
            String::new()
        } else {
            duration(seconds)
        };
        let summary = summary.map(|s| format!("  {s}")).unwrap_or_default();
        self.eprint(format!("{status:>9} {name:<16} {time:<8}{summary}").trim_end());
        if let Some(e) = error
            && (failed || self.verbose)
        {
            for l in e.lines() {
                self.eprint(&format!("          {l}"));
            }
        }
    }

    pub fn message(&self, s: &str) {
        if !self.quiet {
            self.eprint(s);
        }
    }

    /// A spinner (terminal only) for a node that runs; steps move it.
    pub fn node_progress(&self, name: &str) -> NodeProgress {
        let bar = self.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix:>9} {msg:<16} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix("building");
            b.set_message(name.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        NodeProgress {
            bar,
            name: name.to_string(),
        }
    }
}

pub struct NodeProgress {
    bar: Option<ProgressBar>,
    name: String,
}

impl NodeProgress {
    pub fn set(&self, pos: u64, len: u64, unit: &str) {
        if let Some(b) = &self.bar {
            if b.length() != Some(len) {
                let t = format!(
                    "{{spinner}} {{prefix:>9}} {{msg:<16}} {{elapsed}} {{wide_bar}} {{pos}}/{{len}} {unit} (eta {{eta}})"
                );
                if let Ok(style) = ProgressStyle::with_template(&t) {
                    b.set_style(style);
                }
            }
            b.set_length(len);
            b.set_position(pos);
        }
    }
    /// A status line beside the node's name (loss, tokens/s, …).
    pub fn message(&self, m: &str) {
        if let Some(b) = &self.bar {
            b.set_message(format!("{} {m}", self.name));
        }
    }
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

pub fn duration(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.2}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

/// A count with thousands separators: 1234567 → "1,234,567".
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units: 1.5 KiB, 12.0 MiB.
pub fn size(bytes: u64) -> String {
    scaled(bytes, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"])
}

/// Bytes in decimal units (kB, MB, GB, TB), as the space study writes them.
pub fn size_si(bytes: u64) -> String {
    scaled(bytes, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"])
}

fn scaled(bytes: u64, base: f64, units: &[&str; 6]) -> String {
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= base && u + 1 < units.len() {
        v /= base;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// Parses "10G", "512MiB", "3000" into bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match unit
        .trim()
        .to_ascii_lowercase()
        .trim_end_matches("ib")
        .trim_end_matches('b')
    {
        "" => 1u64,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    Some((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_format_and_parse() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(parse_size("10G"), Some(10 << 30));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("3000"), Some(3000));
        assert_eq!(parse_size("x"), None);
    }
}
