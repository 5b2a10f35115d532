//! Checks on the default training corpus in `corpus/`.
//!
//! The corpus is plain text that `pai` learns from, so these tests guard its
//! shape: total size, file count, allowed file types, clean UTF-8, the
//! question-and-answer pairs, and that every Python example compiles.
//! Only the standard library is used; no crate code is involved.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIN_TOTAL_BYTES: u64 = 90_000;
const MAX_TOTAL_BYTES: u64 = 110_000;
const MIN_FILES: usize = 25;
const MIN_QA_PAIRS: usize = 150;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// Recursively collect every regular file under `dir`.
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read directory {}: {e}", dir.display()));
    for entry in entries {
        let entry =
            entry.unwrap_or_else(|e| panic!("cannot read an entry of {}: {e}", dir.display()));
        let path = entry.path();
        let file_type = entry
            .file_type()
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()));
        if file_type.is_dir() {
            collect_files(&path, out);
        } else if file_type.is_file() {
            out.push(path);
        } else {
            panic!(
                "{} is neither a regular file nor a directory (symlinks are not allowed in the corpus)",
                path.display()
            );
        }
    }
}

/// All corpus files, sorted so that messages and runs are deterministic.
fn corpus_files() -> Vec<PathBuf> {
    let dir = corpus_dir();
    assert!(
        dir.is_dir(),
        "corpus directory {} is missing",
        dir.display()
    );
    let mut files = Vec::new();
    collect_files(&dir, &mut files);
    files.sort();
    files
}

/// The path relative to the corpus folder, for readable messages.
fn rel(path: &Path) -> String {
    let dir = corpus_dir();
    path.strip_prefix(&dir)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn extension(path: &Path) -> Option<&str> {
    path.extension().and_then(|e| e.to_str())
}

fn read_text(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", rel(path)));
    assert!(!bytes.contains(&0), "{} contains a NUL byte", rel(path));
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => panic!("{} is not valid UTF-8: {}", rel(path), e.utf8_error()),
    }
}

#[test]
fn corpus_size_and_file_count_are_in_range() {
    let files = corpus_files();
    assert!(
        files.len() >= MIN_FILES,
        "corpus has {} files, expected at least {MIN_FILES}",
        files.len()
    );

    let total: u64 = files
        .iter()
        .map(|p| {
            fs::metadata(p)
                .unwrap_or_else(|e| panic!("cannot stat {}: {e}", rel(p)))
                .len()
        })
        .sum();
    assert!(
        (MIN_TOTAL_BYTES..=MAX_TOTAL_BYTES).contains(&total),
        "corpus is {total} bytes in {} files, expected {MIN_TOTAL_BYTES}..={MAX_TOTAL_BYTES}",
        files.len()
    );
}

#[test]
fn corpus_files_are_markdown_or_python_utf8_text() {
    for path in corpus_files() {
        match extension(&path) {
            Some("md") | Some("py") => {}
            other => panic!(
                "{} has extension {:?}; only .md and .py files belong in corpus/",
                rel(&path),
                other
            ),
        }
        // Panics with the file name on a NUL byte or invalid UTF-8.
        let text = read_text(&path);
        assert!(!text.trim().is_empty(), "{} is empty", rel(&path));
    }
}

/// Count `Q: ` lines in one text, checking that each is followed, on the
/// next non-empty line, by an `A: ` line. Problems are pushed to `errors`.
fn count_qa_pairs(name: &str, text: &str, errors: &mut Vec<String>) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let mut pairs = 0;
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with("Q: ") {
            continue;
        }
        let next = lines[i + 1..].iter().find(|l| !l.trim().is_empty());
        match next {
            Some(answer) if answer.starts_with("A: ") => pairs += 1,
            Some(other) => errors.push(format!(
                "{name}:{}: question is followed by {other:?} instead of an `A: ` line",
                i + 1
            )),
            None => errors.push(format!(
                "{name}:{}: question at end of file has no `A: ` line",
                i + 1
            )),
        }
    }
    pairs
}

#[test]
fn question_and_answer_pairs_are_well_formed_and_numerous() {
    let mut total = 0;
    let mut errors = Vec::new();
    for path in corpus_files() {
        if extension(&path) != Some("md") {
            continue;
        }
        let text = read_text(&path);
        total += count_qa_pairs(&rel(&path), &text, &mut errors);
    }
    assert!(
        errors.is_empty(),
        "malformed Q&A pairs:\n{}",
        errors.join("\n")
    );
    assert!(
        total >= MIN_QA_PAIRS,
        "found {total} Q&A pairs in corpus/, expected at least {MIN_QA_PAIRS}"
    );
}

#[test]
fn qa_pair_counter_rejects_a_question_without_answer() {
    let mut errors = Vec::new();
    let text = "Q: One?\n\nA: Yes.\n\nQ: Two?\nNo answer here.\nQ: Three?\n";
    assert_eq!(count_qa_pairs("sample.md", text, &mut errors), 1);
    assert_eq!(errors.len(), 2, "unexpected errors: {errors:?}");
}

fn python3_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn python_examples_compile() {
    let scripts: Vec<PathBuf> = corpus_files()
        .into_iter()
        .filter(|p| extension(p) == Some("py"))
        .collect();
    assert!(
        !scripts.is_empty(),
        "corpus/ contains no .py example scripts"
    );

    if !python3_available() {
        eprintln!(
            "SKIPPED: python3 was not found on PATH, so the {} corpus .py files were not compiled",
            scripts.len()
        );
        return;
    }

    // py_compile always writes byte-code; send it to a private temporary
    // folder so the corpus never gains __pycache__ directories.
    let cache = std::env::temp_dir().join(format!("pai-corpus-pycache-{}", std::process::id()));
    let mut failures = Vec::new();
    for script in &scripts {
        let output = Command::new("python3")
            .arg("-m")
            .arg("py_compile")
            .arg(script)
            .env("PYTHONPYCACHEPREFIX", &cache)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3 for {}: {e}", rel(script)));
        if !output.status.success() {
            failures.push(format!(
                "{} failed to compile ({}):\n{}",
                rel(script),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    let _ = fs::remove_dir_all(&cache);
    assert!(
        failures.is_empty(),
        "python3 -m py_compile failed:\n{}",
        failures.join("\n")
    );
}
