//! Bad input gets a clear error that names the problem and the fix, the
//! right exit code, and loses nothing.

use crate::common::*;

fn fails_with(p: &Proj, args: &[&str], code: i32, needles: &[&str]) -> String {
    let out = p.run(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "pai {args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "pai {args:?}: expected {n:?} in:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn malformed_toml_names_file_line_and_column() {
    let p = Proj::with_pipeline("[nodes.corpus\nkind = \"source\"\n");
    fails_with(&p, &["build"], 2, &["Pipeline.toml:1:", "invalid TOML"]);
}

#[test]
fn a_typo_in_a_key_is_an_error_with_a_suggestion() {
    let p = Proj::with_pipeline(&PIPELINE.replace("vocab_size = 300", "vocab_sise = 300"));
    let line = PIPELINE
        .lines()
        .position(|l| l.starts_with("vocab_size"))
        .unwrap()
        + 1;
    fails_with(
        &p,
        &["status"],
        2,
        &[
            &format!("Pipeline.toml:{line}:1: unknown key `vocab_sise`"),
            "did you mean `vocab_size`?",
        ],
    );
}

#[test]
fn unknown_kind_missing_input_and_bad_types() {
    let p = Proj::with_pipeline(&PIPELINE.replace("kind = \"tokenize\"", "kind = \"tokenise\""));
    fails_with(
        &p,
        &["build"],
        2,
        &["unknown node kind `tokenise`", "did you mean `tokenize`?"],
    );
    let p =
        Proj::with_pipeline(&PIPELINE.replace("inputs = [\"tokens\"]", "inputs = [\"tokenz\"]"));
    fails_with(
        &p,
        &["build"],
        2,
        &[
            "input `tokenz`, but there is no such node",
            "did you mean `tokens`?",
        ],
    );
    let p = Proj::with_pipeline(&PIPELINE.replace("context = 8", "context = \"eight\""));
    fails_with(
        &p,
        &["build"],
        2,
        &["`context` in node `packed`: expected integer, found a string"],
    );
    let p =
        Proj::with_pipeline(&PIPELINE.replace("inputs = [\"tokens\"]", "inputs = [\"corpus\"]"));
    fails_with(&p, &["build"], 2, &["cannot take `corpus` (kind source)"]);
}

#[test]
fn a_cycle_is_reported_as_its_path() {
    let p = Proj::with_pipeline(
        "[nodes.a]\nkind = \"command\"\ninputs = [\"c\"]\nrun = \"true\"\noutputs = [\"x\"]\n\
         [nodes.b]\nkind = \"command\"\ninputs = [\"a\"]\nrun = \"true\"\noutputs = [\"x\"]\n\
         [nodes.c]\nkind = \"command\"\ninputs = [\"b\"]\nrun = \"true\"\noutputs = [\"x\"]\n",
    );
    let err = fails_with(&p, &["build"], 2, &["the inputs form a cycle"]);
    assert!(
        err.contains("a → b → c → a")
            || err.contains("c → a → b → c")
            || err.contains("b → c → a → b"),
        "{err}"
    );
}

#[test]
fn unknown_target_and_missing_pipeline_file() {
    let p = Proj::new();
    fails_with(
        &p,
        &["build", "tokenzer"],
        2,
        &["no node named `tokenzer`", "did you mean `tokenizer`?"],
    );
    fails_with(
        &p,
        &["-f", "nope.toml", "build"],
        2,
        &["nope.toml: no such pipeline file"],
    );
}

#[test]
fn a_missing_or_empty_corpus_folder_is_named() {
    let p = Proj::new();
    std::fs::remove_dir_all(p.path("corpus")).unwrap();
    fails_with(
        &p,
        &["build", "packed"],
        1,
        &[
            "source folder",
            "corpus does not exist",
            "fix `path = \"corpus\"`",
        ],
    );
    std::fs::create_dir_all(p.path("corpus")).unwrap();
    p.write("corpus/readme.txt", "not markdown");
    fails_with(
        &p,
        &["build", "packed"],
        1,
        &["no file under", "matches include = [\"**/*.md\"]"],
    );
}

#[test]
fn a_corpus_file_that_is_not_utf8_fails_the_tokenizer_and_is_named() {
    let p = Proj::new();
    std::fs::write(p.path("corpus/latin1.md"), b"caf\xe9 au lait\n").unwrap();
    fails_with(
        &p,
        &["build", "packed"],
        1,
        &["latin1.md is not valid UTF-8", "exclude"],
    );
}

#[test]
fn a_failing_command_keeps_nothing_and_shows_its_stderr() {
    let p = Proj::with_pipeline(
        "[nodes.boom]\nkind = \"command\"\nrun = \"echo partial > $PAI_OUT/x; echo 'disk on fire' >&2; exit 3\"\noutputs = [\"x\"]\n",
    );
    fails_with(&p, &["build"], 1, &["disk on fire", "exit code 3"]);
    assert!(objects(p.dir()).is_empty(), "a failed node left objects");
    assert!(!p.path("cache/refs/boom").exists());
    assert!(!p.path("cache/out/boom").exists());
    let tmp: Vec<_> = std::fs::read_dir(p.path("cache/tmp"))
        .map(|r| r.flatten().collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "tmp not cleaned: {tmp:?}");
    let records: Vec<_> = std::fs::read_dir(p.path("cache/records"))
        .map(|r| r.flatten().collect())
        .unwrap_or_default();
    assert!(records.is_empty());
}

#[test]
fn a_command_that_skips_a_declared_output_or_writes_an_undeclared_one_fails() {
    let p = Proj::with_pipeline(
        "[nodes.lazy]\nkind = \"command\"\nrun = \"true\"\noutputs = [\"x\"]\n",
    );
    fails_with(
        &p,
        &["build"],
        1,
        &["did not write its declared output `x`"],
    );
    let p = Proj::with_pipeline(
        "[nodes.messy]\nkind = \"command\"\nrun = \"touch $PAI_OUT/x $PAI_OUT/stray\"\noutputs = [\"x\"]\n",
    );
    fails_with(
        &p,
        &["build"],
        1,
        &["wrote `stray`, which is not a declared output"],
    );
}

#[test]
fn a_failure_skips_dependents_and_earlier_successes_stay_built() {
    let p = Proj::with_pipeline(&format!(
        "{PIPELINE}\n[nodes.bad]\nkind = \"command\"\ninputs = [\"packed\"]\nrun = \"exit 1\"\noutputs = [\"z\"]\n\
         [nodes.later]\nkind = \"command\"\ninputs = [\"bad\"]\nrun = \"true\"\noutputs = [\"z\"]\n"
    ));
    let (v, code) = p.json(&["build", "later"]);
    assert_eq!(code, 1);
    let s = statuses(&v);
    assert_eq!(s["bad"], "failed");
    assert_eq!(s["later"], "skipped");
    assert_eq!(s["packed"], "built");
    assert_eq!(p.build(&["packed"])["packed"], "fresh");
}

#[test]
fn a_corrupt_object_is_found_by_verify_and_rebuilt_by_a_build_that_needs_it() {
    let p = Proj::new();
    p.build(&[]);
    let good = std::fs::read(p.path("cache/out/tokens/tokens.bin")).unwrap();
    // Flip one byte of the stored object (the out/ file is a hard link to it).
    let mut bad = good.clone();
    bad[5] ^= 0x40;
    let obj = p.path("cache/out/tokens/tokens.bin");
    let mut perm = std::fs::metadata(&obj).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&obj, perm).unwrap();
    std::fs::write(&obj, &bad).unwrap();

    let (v, code) = p.json(&["verify"]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["corrupt_objects"].as_array().unwrap().len(), 1, "{v}");

    // `packed` must run (new parameter), reads tokens.bin, finds it corrupt,
    // and rebuilds `tokens` first.
    p.write(
        "Pipeline.toml",
        &PIPELINE.replace("context = 8", "context = 7"),
    );
    let out = p.run(&["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("an output of `tokens` was corrupt"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(p.path("cache/out/tokens/tokens.bin")).unwrap(),
        good
    );
    let (v, code) = p.json(&["verify"]);
    assert_eq!(code, 0, "{v}");
}

#[test]
fn verify_repair_drops_corrupt_objects_and_the_next_build_restores_them() {
    let p = Proj::new();
    p.build(&[]);
    let obj = p.path("cache/out/tokenizer/tokenizer.json");
    let good = std::fs::read(&obj).unwrap();
    std::fs::write(&obj, b"{}").unwrap(); // size changes too
    let (v, code) = p.json(&["verify", "--repair"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["corrupt_objects"].as_array().unwrap().len(), 1);
    let b = p.build(&[]);
    assert_eq!(b["tokenizer"], "built");
    assert_eq!(std::fs::read(&obj).unwrap(), good);
    assert_eq!(b["tokens"], "fresh", "same tokenizer bytes: early cutoff");
}

#[test]
fn an_evaluate_node_without_a_model_is_refused_before_anything_runs() {
    let p = Proj::with_pipeline(&format!(
        "{PIPELINE}\n[nodes.eval]\nkind = \"evaluate\"\ninputs = [\"packed\"]\n"
    ));
    fails_with(
        &p,
        &["build", "eval"],
        2,
        &["node `eval`: it has no model to evaluate", "train"],
    );
    assert!(objects(p.dir()).is_empty(), "nothing was built");
}

#[test]
fn an_output_name_starting_with_a_dot_is_refused() {
    let p = Proj::with_pipeline(
        "[nodes.c]\nkind = \"command\"\nrun = \"touch $PAI_OUT/.key\"\noutputs = [\".key\"]\n",
    );
    fails_with(&p, &["build"], 2, &["no part starting with `.`"]);
}

fn readonly(p: &std::path::Path) -> bool {
    std::fs::metadata(p).unwrap().permissions().readonly()
}

/// Sets a file writable, writes `bytes` in place (same inode), sets it back.
fn overwrite_in_place(p: &std::path::Path, bytes: &[u8]) {
    let mut perm = std::fs::metadata(p).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(p, perm.clone()).unwrap();
    std::fs::write(p, bytes).unwrap();
    perm.set_readonly(true);
    std::fs::set_permissions(p, perm).unwrap();
}

#[test]
fn a_damaged_object_of_the_right_size_is_replaced_when_a_node_writes_its_bytes_again() {
    let p = Proj::with_pipeline(
        "[nodes.c]\nkind = \"command\"\nrun = \"echo constant > $PAI_OUT/x\"\noutputs = [\"x\"]\n",
    );
    p.build(&[]);
    // Flip one byte of the stored object: same size, wrong bytes.
    overwrite_in_place(&p.path("cache/out/c/x"), b"constanT\n");
    // A new key that writes the same bytes must not adopt the damaged object.
    p.write(
        "Pipeline.toml",
        "[nodes.c]\nkind = \"command\"\nrun = \"echo constant > $PAI_OUT/x; true\"\noutputs = [\"x\"]\n",
    );
    assert_eq!(p.build(&[])["c"], "built");
    assert_eq!(p.read("cache/out/c/x"), "constant\n");
    let (v, code) = p.json(&["verify"]);
    assert_eq!(code, 0, "{v}");
}

#[test]
fn verify_repair_that_cannot_delete_says_so_and_fails() {
    let p = Proj::with_pipeline(
        "[nodes.c]\nkind = \"command\"\nrun = \"echo constant > $PAI_OUT/x\"\noutputs = [\"x\"]\n",
    );
    p.build(&[]);
    overwrite_in_place(&p.path("cache/out/c/x"), b"constanT\n");
    let obj = objects(p.dir()).pop().unwrap();
    let shard = obj.parent().unwrap().to_path_buf();
    use std::os::unix::fs::PermissionsExt;
    // Root may delete in a read-only folder: pai runs as an unprivileged user
    // (the first call opens the project to it; the folder is closed after).
    if p.unprivileged(&["status"]).is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot run pai unprivileged"
        );
        eprintln!("skipped: cannot run pai as an unprivileged user here");
        return;
    }
    std::fs::set_permissions(&shard, std::fs::Permissions::from_mode(0o555)).unwrap();
    let out = p.unprivileged(&["verify", "--repair"]).unwrap();
    std::fs::set_permissions(&shard, std::fs::Permissions::from_mode(0o755)).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(!stdout.contains("(deleted)"), "{stdout}");
    assert!(stdout.contains("could not repair"), "{stdout}");
    assert!(obj.exists());
}

#[test]
fn a_command_that_hard_links_a_user_file_into_its_output_leaves_that_file_alone() {
    let p = Proj::with_pipeline(
        "[nodes.c]\nkind = \"command\"\nrun = \"ln notes/a.txt $PAI_OUT/a.txt\"\noutputs = [\"a.txt\"]\n",
    );
    p.build(&[]);
    use std::os::unix::fs::MetadataExt;
    let user = std::fs::metadata(p.path("notes/a.txt")).unwrap();
    let out = std::fs::metadata(p.path("cache/out/c/a.txt")).unwrap();
    assert!(
        !user.permissions().readonly(),
        "the user's file was made read-only"
    );
    assert_eq!(user.nlink(), 1, "the user's file shares its inode");
    assert_ne!(user.ino(), out.ino());
    assert_eq!(p.read("cache/out/c/a.txt"), "alpha\n");
    // Editing the user's file does not change the store.
    p.write("notes/a.txt", "edited\n");
    assert_eq!(p.read("cache/out/c/a.txt"), "alpha\n");
    let (v, code) = p.json(&["verify"]);
    assert_eq!(code, 0, "{v}");
}

#[test]
fn an_output_that_is_a_symbolic_link_is_refused_by_name() {
    let p = Proj::with_pipeline(
        "[nodes.c]\nkind = \"command\"\nrun = \"ln -s \\\"$PWD/notes/a.txt\\\" $PAI_OUT/x\"\noutputs = [\"x\"]\n",
    );
    fails_with(&p, &["build"], 1, &["`x`", "symbolic link", "cp -L"]);
    assert!(objects(p.dir()).is_empty());
    assert!(!readonly(&p.path("notes/a.txt")));
    assert_eq!(p.read("notes/a.txt"), "alpha\n");
}

#[test]
fn cleanup_follows_no_symbolic_link_a_command_left_in_tmp() {
    let p = Proj::with_pipeline(
        "[nodes.c]\nkind = \"command\"\n\
         run = \"echo x > $PAI_OUT/x; ln -s \\\"$PWD/keep\\\" $PAI_OUT/../dir-link; ln -s \\\"$PWD/keep/ro.txt\\\" $PAI_OUT/../file-link\"\n\
         outputs = [\"x\"]\n",
    );
    p.write("keep/ro.txt", "mine\n");
    let ro = p.path("keep/ro.txt");
    let mut perm = std::fs::metadata(&ro).unwrap().permissions();
    perm.set_readonly(true);
    std::fs::set_permissions(&ro, perm).unwrap();
    p.build(&[]);
    let out = p.run(&["gc", "--grace", "0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(readonly(&ro), "gc made a file outside the store writable");
    assert_eq!(p.read("keep/ro.txt"), "mine\n");
    assert!(!p.path("cache/tmp/dir-link").exists());
    assert!(std::fs::symlink_metadata(p.path("cache/tmp/file-link")).is_err());
    // The next build's cleanup too.
    p.build(&[]);
    assert!(readonly(&ro));
}

#[test]
fn store_commands_refuse_a_folder_without_a_pipeline_file_and_create_nothing() {
    let p = Proj::new();
    let missing = p.path("nope");
    let empty = p.path("empty");
    std::fs::create_dir(&empty).unwrap();
    for cmd in ["gc", "verify", "du"] {
        for dir in [&missing, &empty] {
            let out = std::process::Command::new(BIN)
                .arg("-C")
                .arg(dir)
                .arg(cmd)
                .output()
                .unwrap();
            let err = stderr(&out);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{cmd} in {}: {err}",
                dir.display()
            );
            assert!(err.contains(&*dir.to_string_lossy()), "{err}");
            assert!(err.contains("Pipeline.toml"), "{err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    assert!(!missing.exists());
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

#[test]
fn an_unreadable_ref_is_damage_verify_reports_and_gc_refuses() {
    let p = Proj::new();
    p.build(&[]);
    let obj_count = objects(p.dir()).len();
    for bad in ["", "garbage\n"] {
        p.write("cache/refs/tokens", bad);
        let (v, code) = p.json(&["verify"]);
        assert_eq!(code, 1, "{v}");
        assert_eq!(v["bad_refs"], serde_json::json!(["tokens"]), "{v}");
        let err = fails_with(
            &p,
            &["gc", "--grace", "0"],
            1,
            &["refs/tokens", "pai verify --repair", "pai build tokens"],
        );
        assert!(err.contains("cannot be read"), "{err}");
        assert_eq!(objects(p.dir()).len(), obj_count, "gc deleted objects");
        assert!(p.path("cache/out/tokens/tokens.bin").exists());
    }
    let (v, code) = p.json(&["verify", "--repair"]);
    assert_eq!(code, 0, "{v}");
    assert!(!p.path("cache/refs/tokens").exists());
    let (v, code) = p.json(&["verify"]);
    assert_eq!(code, 0, "{v}");
    p.build(&[]);
    assert!(p.path("cache/refs/tokens").exists());
    assert!(p.run(&["gc", "--grace", "0"]).status.success());
}

#[test]
fn a_bad_glob_in_a_commands_outputs_is_a_pipeline_error_not_a_build_failure() {
    let p = Proj::with_pipeline(
        "[nodes.c]\nkind = \"command\"\nrun = \"touch $PAI_OUT/a\"\noutputs = [\"out/[ab\"]\n",
    );
    fails_with(&p, &["status"], 2, &["out/[ab", "not a valid glob"]);
    assert!(!p.path("cache/out").exists(), "nothing ran");
}

#[test]
fn a_node_name_too_long_for_a_file_name_is_a_pipeline_error() {
    let long = "n".repeat(240);
    let p = Proj::with_pipeline(&format!(
        "[nodes.{long}]\nkind = \"command\"\nrun = \"touch $PAI_OUT/a\"\noutputs = [\"a\"]\n"
    ));
    fails_with(&p, &["build"], 2, &["is not valid", "at most 128"]);
    let ok = "n".repeat(128);
    let p = Proj::with_pipeline(&format!(
        "[nodes.{ok}]\nkind = \"command\"\nrun = \"touch $PAI_OUT/a\"\noutputs = [\"a\"]\n"
    ));
    let b = p.build(&[]);
    assert_eq!(b[&ok], "built");
}

#[test]
fn an_unreadable_folder_under_a_source_fails_the_build_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let p = Proj::new();
    let sub = p.path("corpus/sub");
    // Runs as an unprivileged user, so chmod first opens the project, then the folder is closed.
    let close = || std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o000)).unwrap();
    let reopen = || std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let Some(_) = p.unprivileged(&["status"]) else {
        eprintln!("skipped: cannot run pai as an unprivileged user here");
        return;
    };
    close();
    let out = p.unprivileged(&["build", "packed"]).unwrap();
    reopen();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("corpus/sub"), "{err}");
    assert!(err.contains("exclude"), "{err}");

    // Excluding the folder is the stated fix.
    let pipeline = p.read("Pipeline.toml").replacen(
        "include = [\"**/*.md\"]",
        "include = [\"**/*.md\"]\nexclude = [\"sub/**\"]",
        1,
    );
    p.write("Pipeline.toml", &pipeline);
    close();
    let out = p.unprivileged(&["build", "packed"]).unwrap();
    reopen();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
