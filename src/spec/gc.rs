//! The `[gc]` table of a pipeline file: the project's defaults for `pai gc`
//! (`keep`, `max_size`, `temporaries`, `grace`), which the command line
//! overrides.

use toml::de::{DeInteger, DeTable, DeValue};

use super::{Diag, did_you_mean, parse_int, type_name};

/// Defaults for `pai gc`; `None`: not set in the file.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct GcDefaults {
    /// Older builds kept per node.
    pub keep: Option<usize>,
    /// Bytes over which temporaries go too.
    pub max_size: Option<u64>,
    /// Whether temporary and log outputs of current builds go.
    pub temporaries: Option<bool>,
    /// Seconds during which unreachable objects and records are kept.
    pub grace: Option<u64>,
}

const KEYS: &[&str] = &["keep", "max_size", "temporaries", "grace"];

/// `1h`, `30m`, `45s`, `2d`, `0`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

pub(super) fn parse(table: &DeTable, diags: &mut Vec<Diag>) -> GcDefaults {
    let mut d = GcDefaults::default();
    for (k, v) in table.iter() {
        let key = k.get_ref().as_ref();
        let mut bad = |message: String, help: &str| {
            diags.push(Diag {
                span: v.span(),
                message,
                help: Some(help.into()),
            })
        };
        // A TOML integer that is ≥ 0.
        let whole =
            |i: &DeInteger| parse_int(i.as_str(), i.radix()).and_then(|n| u64::try_from(n).ok());
        match (key, v.get_ref()) {
            ("keep", DeValue::Integer(i)) => match whole(i).and_then(|n| usize::try_from(n).ok()) {
                Some(n) => d.keep = Some(n),
                None => bad(
                    format!("`keep` must be a whole number ≥ 0, found {}", i.as_str()),
                    "e.g. keep = 2 keeps the two newest older builds of each node",
                ),
            },
            ("max_size", DeValue::String(s)) => match crate::report::parse_size(s) {
                Some(n) => d.max_size = Some(n),
                None => bad(
                    format!("`max_size` {s:?} is not a size"),
                    "write it as bytes with a unit, e.g. max_size = \"10G\" or \"500M\"",
                ),
            },
            ("max_size", DeValue::Integer(i)) => match whole(i) {
                Some(n) => d.max_size = Some(n),
                None => bad(
                    format!("`max_size` must be ≥ 0 bytes, found {}", i.as_str()),
                    "write it as bytes with a unit, e.g. max_size = \"10G\"",
                ),
            },
            ("temporaries", DeValue::Boolean(b)) => d.temporaries = Some(*b),
            ("grace", DeValue::String(s)) => match parse_duration(s) {
                Some(n) => d.grace = Some(n),
                None => bad(
                    format!("`grace` {s:?} is not a duration"),
                    "write it with a unit, e.g. grace = \"1h\", \"30m\", \"0\"",
                ),
            },
            ("grace", DeValue::Integer(i)) => match whole(i) {
                Some(n) => d.grace = Some(n),
                None => bad(
                    format!("`grace` must be ≥ 0 seconds, found {}", i.as_str()),
                    "write it with a unit, e.g. grace = \"1h\"",
                ),
            },
            (k @ ("keep" | "max_size" | "temporaries" | "grace"), other) => bad(
                format!("`{k}` cannot be {}", type_name(other)),
                match k {
                    "keep" => "keep = 2",
                    "max_size" => "max_size = \"10G\"",
                    "temporaries" => "temporaries = true",
                    _ => "grace = \"1h\"",
                },
            ),
            (other, _) => diags.push(Diag {
                span: k.span(),
                message: format!("unknown key `{other}` in [gc]"),
                help: did_you_mean(other, KEYS)
                    .or_else(|| Some(format!("[gc] takes {}", KEYS.join(", ")))),
            }),
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_refuse_garbage() {
        assert_eq!(parse_duration("1h"), Some(3600));
        assert_eq!(parse_duration("30m"), Some(1800));
        assert_eq!(parse_duration("45"), Some(45));
        assert_eq!(parse_duration("0"), Some(0));
        assert_eq!(parse_duration("2d"), Some(172_800));
        assert_eq!(parse_duration("1.5h"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("99999999999999999999d"), None);
    }
}
