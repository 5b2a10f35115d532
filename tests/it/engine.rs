//! The engine as a user drives it: incremental builds, restores, early
//! cutoff, gc, and the JSON documents scripts read.

use crate::common::*;

const ALL: [&str; 8] = [
    "corpus",
    "tokenizer",
    "tokens",
    "packed",
    "stamp",
    "after",
    "notes",
    "summary",
];

#[test]
fn first_build_builds_everything_and_a_second_runs_nothing() {
    let p = Proj::new();
    let first = p.build(&[]);
    assert_eq!(first.len(), ALL.len(), "{first:?}");
    assert_eq!(with_status(&first, "built").len(), ALL.len(), "{first:?}");
    let second = p.build(&[]);
    assert_eq!(with_status(&second, "fresh").len(), ALL.len(), "{second:?}");
    // The outputs are where `pai path` says, with the promised formats.
    let out = p.run(&["path", "packed", "pack.json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = String::from_utf8(out.stdout).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path.trim()).unwrap()).unwrap();
    assert_eq!(meta["row_tokens"], 9);
    let train = std::fs::metadata(p.path("cache/out/packed/train.bin"))
        .unwrap()
        .len();
    assert_eq!(train % (9 * 4), 0, "train.bin is whole rows of 9 u32");
    assert!(train > 0);
    let tokens = std::fs::metadata(p.path("cache/out/tokens/tokens.bin"))
        .unwrap()
        .len();
    assert_eq!(tokens % 4, 0);
}

#[test]
fn a_corpus_edit_rebuilds_exactly_its_dependents_and_status_says_why() {
    let p = Proj::new();
    p.build(&[]);
    let mut doc = p.read("corpus/doc1.md");
    doc.push_str("one more line\n");
    p.write("corpus/doc1.md", &doc);

    let (st, code) = p.json(&["status", "packed", "after", "summary"]);
    assert_eq!(code, 0);
    let nodes = st["nodes"].as_array().unwrap();
    let stale: Vec<&str> = nodes
        .iter()
        .filter(|n| n["stale"] == true)
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        stale,
        ["corpus", "tokenizer", "tokens", "packed", "stamp", "after"]
    );
    let corpus = nodes.iter().find(|n| n["name"] == "corpus").unwrap();
    assert!(
        corpus["reasons"]
            .to_string()
            .contains("file `doc1.md` modified"),
        "{corpus}"
    );
    let tok = nodes.iter().find(|n| n["name"] == "tokenizer").unwrap();
    assert!(
        tok["reasons"]
            .to_string()
            .contains("input `corpus` changed"),
        "{tok}"
    );

    let b = p.build(&[]);
    assert_eq!(
        with_status(&b, "built"),
        ["corpus", "packed", "stamp", "tokenizer", "tokens"]
    );
    // Early cutoff: `stamp` ran again but wrote the same bytes, so `after` is fresh.
    assert_eq!(with_status(&b, "fresh"), ["after", "notes", "summary"]);
}

#[test]
fn reverting_an_edit_restores_from_the_cache_without_running() {
    let p = Proj::new();
    p.build(&[]);
    let original = p.read("corpus/doc2.md");
    p.write("corpus/doc2.md", &format!("{original}extra words here\n"));
    p.build(&[]);
    p.write("corpus/doc2.md", &original);
    let b = p.build(&[]);
    assert_eq!(
        with_status(&b, "restored"),
        ["corpus", "packed", "stamp", "tokenizer", "tokens"],
        "{b:?}"
    );
    assert_eq!(with_status(&b, "built"), Vec::<String>::new());
    assert_eq!(
        p.build(&[]).values().filter(|s| *s == "fresh").count(),
        ALL.len()
    );
}

#[test]
fn a_parameter_edit_rebuilds_that_node_and_below_only() {
    let p = Proj::new();
    p.build(&[]);
    p.write(
        "Pipeline.toml",
        &PIPELINE.replace("context = 8", "context = 6"),
    );
    let ex = p.run(&["explain", "packed"]);
    let text = String::from_utf8_lossy(&ex.stdout);
    assert!(
        text.contains("parameter `context` changed: 8 → 6"),
        "{text}"
    );
    let b = p.build(&[]);
    assert_eq!(with_status(&b, "built"), ["packed"]);
    let meta: serde_json::Value =
        serde_json::from_str(&p.read("cache/out/packed/pack.json")).unwrap();
    assert_eq!(meta["row_tokens"], 7);
}

#[test]
fn a_new_kind_implementation_rebuilds_its_nodes_only() {
    let p = Proj::new();
    p.build(&[]);
    let out = p
        .cmd(&["--json", "status"])
        .env("PAI_KIND_VERSION", "pack=99")
        .output()
        .unwrap();
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packed = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "packed")
        .unwrap()
        .clone();
    assert!(
        packed["reasons"]
            .to_string()
            .contains("`pack` implementation changed (version 1 → 99)"),
        "{packed}"
    );
    let out = p
        .cmd(&["--json", "build"])
        .env("PAI_KIND_VERSION", "pack=99")
        .output()
        .unwrap();
    let b = statuses(&serde_json::from_slice(&out.stdout).unwrap());
    assert_eq!(with_status(&b, "built"), ["packed"]);
}

#[test]
fn renaming_a_node_rebuilds_nothing_downstream() {
    let p = Proj::new();
    p.build(&[]);
    let renamed = PIPELINE
        .replace("[nodes.notes]", "[nodes.memo]")
        .replace("[\"notes\"]", "[\"memo\"]")
        .replace("PAI_IN_NOTES", "PAI_IN_MEMO");
    p.write("Pipeline.toml", &renamed);
    let b = p.build(&[]);
    assert_eq!(b["memo"], "restored"); // same key as `notes`: names are not in keys
    // The command text changed (the variable name), so summary reruns, and
    // writes the same bytes.
    assert_eq!(b["summary"], "built");
    assert_eq!(p.read("cache/out/summary/count.txt").trim(), "11");
}

#[test]
fn independent_nodes_run_in_parallel() {
    // Each node waits for the other to start: this passes only if both run at once.
    let pipeline = r#"
[nodes.a]
kind = "command"
run = "touch a.started; for i in $(seq 100); do [ -f b.started ] && echo a > $PAI_OUT/a && exit 0; sleep 0.05; done; exit 1"
outputs = ["a"]
[nodes.b]
kind = "command"
run = "touch b.started; for i in $(seq 100); do [ -f a.started ] && echo b > $PAI_OUT/b && exit 0; sleep 0.05; done; exit 1"
outputs = ["b"]
"#;
    // Commands run in the project folder: the rendezvous files go there.
    let p = Proj::with_pipeline(pipeline);
    let b = p.build(&["-j", "2"]);
    assert_eq!(with_status(&b, "built"), ["a", "b"]);
}

#[test]
fn gpu_nodes_take_the_single_gpu_slot() {
    let node = |name: &str| {
        format!(
            "[nodes.{name}]\nkind = \"command\"\ngpu = true\noutputs = [\"o\"]\n\
             run = \"ls gpu.* 2>/dev/null && exit 9; touch gpu.{name}; sleep 0.4; ls gpu.* | grep -v gpu.{name} && exit 8; rm gpu.{name}; echo {name} > $PAI_OUT/o\"\n"
        )
    };
    let p = Proj::with_pipeline(&format!("{}{}{}", node("g1"), node("g2"), node("g3")));
    let b = p.build(&["-j", "3"]);
    assert_eq!(with_status(&b, "built"), ["g1", "g2", "g3"]);
}

#[test]
fn gc_dry_run_deletes_nothing_and_gc_deletes_only_unreachable() {
    let p = Proj::new();
    p.build(&[]);
    let doc = p.read("corpus/doc0.md");
    p.write("corpus/doc0.md", &format!("{doc}changed\n"));
    p.build(&[]);
    let before = objects(p.dir());

    let (dry, code) = p.json(&["gc", "--grace", "0", "--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(dry["dry_run"], true);
    let would = dry["deleted_objects"].as_u64().unwrap();
    assert!(
        would >= 4,
        "the old tokenizer, tokens and packed outputs are unreachable: {dry}"
    );
    assert!(dry["freed_bytes"].as_u64().unwrap() > 0);
    assert_eq!(objects(p.dir()), before, "--dry-run deleted something");

    let (done, code) = p.json(&["gc", "--grace", "0"]);
    assert_eq!(code, 0);
    assert_eq!(done["deleted_objects"].as_u64().unwrap(), would);
    assert_eq!(done["freed_bytes"], dry["freed_bytes"]);
    assert_eq!(objects(p.dir()).len(), before.len() - would as usize);
    // Everything current survived: a build runs nothing, verify is clean.
    assert!(p.build(&[]).values().all(|s| s == "fresh"));
    let (v, code) = p.json(&["verify"]);
    assert_eq!(code, 0, "{v}");
    // The old build is gone: reverting must rebuild, not restore.
    p.write("corpus/doc0.md", &doc);
    assert_eq!(p.build(&[])["tokenizer"], "built");
}

#[test]
fn gc_keep_keeps_older_builds_to_restore() {
    let p = Proj::new();
    p.build(&[]);
    let doc = p.read("corpus/doc0.md");
    p.write("corpus/doc0.md", &format!("{doc}changed\n"));
    p.build(&[]);
    let (r, _) = p.json(&["gc", "--grace", "0", "--keep", "1"]);
    assert_eq!(r["deleted_objects"], 0, "{r}");
    p.write("corpus/doc0.md", &doc);
    assert_eq!(p.build(&[])["tokenizer"], "restored");
}

#[test]
fn gc_keep_keeps_the_newest_older_builds_even_within_one_second() {
    let p = Proj::with_pipeline(
        "[nodes.notes]\nkind = \"source\"\npath = \"notes\"\n\
         [nodes.n]\nkind = \"command\"\ninputs = [\"notes\"]\n\
         run = \"cat $PAI_IN_NOTES/a.txt > $PAI_OUT/n\"\noutputs = [\"n\"]\n",
    );
    // Five versions in quick succession (well within a second or two).
    for v in 0..5 {
        p.write("notes/a.txt", &format!("version {v}\n"));
        p.build(&[]);
    }
    p.json(&["gc", "--grace", "0", "--keep", "1"]);
    // The newest older build (version 3) survives; the others are gone.
    p.write("notes/a.txt", "version 3\n");
    assert_eq!(p.build(&[])["n"], "restored");
    p.write("notes/a.txt", "version 0\n");
    assert_eq!(p.build(&[])["n"], "built");
}

#[test]
fn gc_temporaries_drops_temporary_outputs_but_keeps_the_build_fresh() {
    let pipeline = r#"
[nodes.trainer]
kind = "command"
run = "echo weights > $PAI_OUT/model.bin; mkdir -p $PAI_OUT/checkpoints; echo c1 > $PAI_OUT/checkpoints/step-1.bin; echo c2 > $PAI_OUT/checkpoints/step-2.bin"
outputs = ["model.bin", "checkpoints/*"]
temporary = ["checkpoints/*"]
[nodes.user]
kind = "command"
inputs = ["trainer"]
run = "cp $PAI_IN_TRAINER/model.bin $PAI_OUT/copy.bin"
outputs = ["copy.bin"]
"#;
    let p = Proj::with_pipeline(pipeline);
    p.build(&[]);
    assert!(p.path("cache/out/trainer/checkpoints/step-2.bin").exists());
    let (du, _) = p.json(&["du"]);
    assert_eq!(du["temporary_bytes"], 6, "{du}");
    let (plain, _) = p.json(&["gc", "--grace", "0"]);
    assert_eq!(
        plain["deleted_objects"], 0,
        "plain gc keeps temporaries of current builds: {plain}"
    );
    let (r, _) = p.json(&["gc", "--grace", "0", "--temporaries"]);
    assert_eq!(r["deleted_objects"], 2, "{r}");
    assert!(!p.path("cache/out/trainer/checkpoints/step-2.bin").exists());
    assert!(p.path("cache/out/trainer/model.bin").exists());
    let b = p.build(&[]);
    assert!(b.values().all(|s| s == "fresh"), "{b:?}");
    let (du, _) = p.json(&["du"]);
    let outs = du["nodes"][0]["outputs"].as_array().unwrap();
    assert!(
        outs.iter()
            .any(|o| o["name"] == "checkpoints/step-1.bin" && o["retention"] == "temporary")
    );
    let (v, code) = p.json(&["verify"]);
    assert_eq!(code, 0, "{v}");
}

#[test]
fn json_documents_have_the_promised_fields() {
    let p = Proj::new();
    let (b, _) = p.json(&["build"]);
    let n = &b["nodes"][0];
    assert!(
        n["name"].is_string()
            && n["status"].is_string()
            && n["seconds"].is_number()
            && n["key"].is_string(),
        "{n}"
    );
    let (s, _) = p.json(&["status"]);
    let n = &s["nodes"][0];
    assert!(
        n["name"].is_string() && n["stale"].is_boolean() && n["reasons"].is_array(),
        "{n}"
    );
    let (g, _) = p.json(&["gc", "--grace", "0", "--dry-run"]);
    assert!(
        g["dry_run"].is_boolean()
            && g["deleted_objects"].is_number()
            && g["freed_bytes"].is_number(),
        "{g}"
    );
    let (d, _) = p.json(&["du"]);
    assert!(
        d["cache_bytes"].as_u64().unwrap() > 0 && d["reclaimable_bytes"].is_number(),
        "{d}"
    );
    let tok = d["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "tokenizer")
        .unwrap();
    let o = &tok["outputs"][0];
    assert_eq!(o["name"], "tokenizer.json");
    assert_eq!(o["retention"], "keep");
    assert!(o["bytes"].as_u64().unwrap() > 1000);
}

#[test]
fn dry_run_builds_nothing() {
    let p = Proj::new();
    let (v, code) = p.json(&["build", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["action"] != "fresh")
    );
    assert!(objects(p.dir()).is_empty());
    assert!(!p.path("cache/refs").exists());
}

#[test]
fn the_stat_cache_spares_reading_unchanged_files() {
    let p = Proj::new();
    // Let the files' mtimes fall behind the racily-clean window.
    std::thread::sleep(std::time::Duration::from_millis(250));
    p.build(&[]);
    let (s, _) = p.json(&["status"]);
    let corpus = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "corpus")
        .unwrap()
        .clone();
    assert_eq!(corpus["hashed_files"], 0, "{corpus}");
}

#[test]
fn an_edit_in_the_same_instant_as_the_build_is_seen() {
    use std::fs::File;
    let p = Proj::new();
    p.build(&[]);
    // Same size, same mtime: only the content differs.
    let path = p.path("corpus/doc3.md");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut doc = p.read("corpus/doc3.md").into_bytes();
    doc[0] = if doc[0] == b'X' { b'Y' } else { b'X' };
    std::fs::write(&path, &doc).unwrap();
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let b = p.build(&[]);
    assert_eq!(b["tokenizer"], "built", "{b:?}");
}

#[test]
fn the_tokenizer_is_deterministic_across_stores() {
    let a = Proj::new();
    let b = Proj::new();
    a.build(&["packed"]);
    b.build(&["packed"]);
    for f in [
        "tokenizer/tokenizer.json",
        "tokens/tokens.bin",
        "packed/train.bin",
        "packed/val.bin",
    ] {
        let x = std::fs::read(a.path(&format!("cache/out/{f}"))).unwrap();
        let y = std::fs::read(b.path(&format!("cache/out/{f}"))).unwrap();
        assert!(x == y, "{f} differs between two builds of the same corpus");
    }
    let tok: serde_json::Value =
        serde_json::from_str(&a.read("cache/out/tokenizer/tokenizer.json")).unwrap();
    assert_eq!(tok["added_tokens"][0]["content"], "<|endoftext|>");
    assert_eq!(tok["added_tokens"][0]["id"], 0);
    assert_eq!(tok["pre_tokenizer"]["add_prefix_space"], false);
}

#[test]
fn other_pipeline_files_keep_their_own_refs() {
    let p = Proj::new();
    p.build(&[]);
    p.write(
        "pipelines/small.toml",
        &PIPELINE.replace("context = 8", "context = 5"),
    );
    let b = p.build(&["-f", "pipelines/small.toml"]);
    assert_eq!(b["packed"], "built");
    assert_eq!(
        b["tokenizer"], "restored",
        "shared objects and records: {b:?}"
    );
    // The main pipeline's builds are untouched and both survive gc.
    p.json(&["gc", "--grace", "0"]);
    assert!(p.build(&[]).values().all(|s| s == "fresh"));
    assert!(
        p.build(&["-f", "pipelines/small.toml"])
            .values()
            .all(|s| s == "fresh")
    );
    let out = p.run(&["-f", "pipelines/small.toml", "path", "packed"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("views/pipelines+small/out/packed"));
}

#[test]
fn gc_in_a_copied_project_judges_views_by_the_copy_s_own_files() {
    let a = Proj::new();
    a.write("pipelines/side.toml", PIPELINE);
    a.build(&["-f", "pipelines/side.toml"]);
    let b = Proj::new();
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(a.path("."))
        .arg(b.path("."))
        .status()
        .unwrap();
    assert!(copied.success());
    // The original drops every node of its side pipeline but the corpus.
    a.write(
        "pipelines/side.toml",
        "[nodes.corpus]\nkind = \"source\"\npath = \"corpus\"\n",
    );
    let (_, code) = b.json(&["gc", "--grace", "0"]);
    assert_eq!(code, 0);
    let again = b.build(&["-f", "pipelines/side.toml"]);
    assert!(
        again.values().all(|s| s == "fresh"),
        "gc in the copy followed the original's file: {again:?}"
    );
}

#[test]
fn graph_renders_dot_and_mermaid() {
    let p = Proj::new();
    let dot = String::from_utf8(p.run(&["graph"]).stdout).unwrap();
    assert!(dot.contains("\"tokenizer\" -> \"tokens\""), "{dot}");
    let mm = String::from_utf8(p.run(&["graph", "--format", "mermaid"]).stdout).unwrap();
    assert!(
        mm.starts_with("flowchart LR") && mm.contains("stamp --> after"),
        "{mm}"
    );
}

#[test]
fn a_source_over_the_project_folder_does_not_hash_the_store() {
    let p = Proj::with_pipeline(
        "[nodes.all]\nkind = \"source\"\npath = \".\"\n\
         [nodes.count]\nkind = \"command\"\ninputs = [\"all\"]\nrun = \"ls -R $PAI_IN_ALL/corpus | wc -l > $PAI_OUT/n\"\noutputs = [\"n\"]\n",
    );
    p.build(&[]);
    let again = p.build(&[]);
    assert!(
        again.values().all(|s| s == "fresh"),
        "the store's own files leaked into the source: {again:?}"
    );
}

#[test]
fn files_the_globs_do_not_select_cannot_break_a_source() {
    let p = Proj::new();
    std::os::unix::fs::symlink("/nonexistent/target", p.path("corpus/.#doc0.md")).unwrap(); // editor lock file
    std::os::unix::fs::symlink("/nonexistent/target", p.path("corpus/dangling.txt")).unwrap();
    std::os::unix::fs::symlink(p.path("corpus"), p.path("corpus/sub/loop")).unwrap();
    std::fs::write(p.path("corpus/junk\u{e9}.bin"), b"\xff\xfe").unwrap();
    let b = p.build(&["packed"]);
    assert_eq!(b["corpus"], "built");
}

#[test]
fn two_sources_over_one_folder_keep_their_own_stat_caches() {
    let p = Proj::with_pipeline(
        "[nodes.md]\nkind = \"source\"\npath = \"corpus\"\ninclude = [\"*.md\"]\n\
         [nodes.deep]\nkind = \"source\"\npath = \"corpus\"\ninclude = [\"sub/**\"]\n",
    );
    std::thread::sleep(std::time::Duration::from_millis(250));
    p.build(&[]);
    let (s, _) = p.json(&["status"]);
    for n in s["nodes"].as_array().unwrap() {
        assert_eq!(n["hashed_files"], 0, "{n}");
    }
}

#[test]
fn reordering_inputs_rebuilds_nothing() {
    let p = Proj::new();
    p.build(&[]);
    p.write(
        "Pipeline.toml",
        &PIPELINE.replace(
            "inputs = [\"corpus\", \"tokenizer\"]",
            "inputs = [\"tokenizer\", \"corpus\"]",
        ),
    );
    assert!(p.build(&[]).values().all(|s| s == "fresh"));
}

#[test]
fn identical_nodes_build_side_by_side() {
    let node = |n: &str| {
        format!(
            "[nodes.{n}]\nkind = \"command\"\nrun = \"sleep 0.2; echo same > $PAI_OUT/x\"\noutputs = [\"x\"]\n"
        )
    };
    let p = Proj::with_pipeline(&format!("{}{}", node("a"), node("b")));
    let b = p.build(&["-j", "2"]);
    assert!(b.values().all(|s| s == "built" || s == "restored"), "{b:?}");
    assert_eq!(p.read("cache/out/a/x"), "same\n");
    assert_eq!(p.read("cache/out/b/x"), "same\n");
}

#[test]
fn a_replaced_out_file_is_put_back() {
    let p = Proj::new();
    p.build(&[]);
    let good = p.read("cache/out/tokens/tokens.json");
    // What `sed -i` does: write a new file and rename it over the old one.
    p.write("cache/out/tokens/edited", "{}");
    std::fs::rename(
        p.path("cache/out/tokens/edited"),
        p.path("cache/out/tokens/tokens.json"),
    )
    .unwrap();
    assert_eq!(p.build(&[])["tokens"], "fresh");
    assert_eq!(p.read("cache/out/tokens/tokens.json"), good);
}

#[test]
fn leftovers_of_a_killed_ref_write_are_not_roots() {
    let p = Proj::new();
    p.build(&[]);
    let old_key = p.read("cache/refs/tokenizer");
    let doc = p.read("corpus/doc0.md");
    p.write("corpus/doc0.md", &format!("{doc}more\n"));
    p.build(&[]);
    p.write("cache/refs/.tokenizer.999.0.tmp", &old_key);
    let (r, _) = p.json(&["gc", "--grace", "0"]);
    assert!(r["deleted_records"].as_u64().unwrap() >= 1, "{r}");
    assert!(
        !p.path(&format!("cache/records/{}.json", old_key.trim()))
            .exists()
    );
    p.build(&[]);
    assert!(!p.path("cache/refs/.tokenizer.999.0.tmp").exists());
}

#[test]
fn a_command_reading_collected_temporaries_gets_them_back() {
    let pipeline = r#"
[nodes.up]
kind = "command"
run = "echo model > $PAI_OUT/model.bin; echo state > $PAI_OUT/ckpt.bin"
outputs = ["model.bin", "ckpt.bin"]
temporary = ["ckpt.bin"]
[nodes.down]
kind = "command"
inputs = ["up"]
run = "cat $PAI_IN_UP/ckpt.bin > $PAI_OUT/resumed"
outputs = ["resumed"]
"#;
    let p = Proj::with_pipeline(pipeline);
    p.build(&[]);
    p.json(&["gc", "--grace", "0", "--temporaries"]);
    assert!(!p.path("cache/out/up/ckpt.bin").exists());
    p.write(
        "Pipeline.toml",
        &pipeline.replace("> $PAI_OUT/resumed", "> $PAI_OUT/resumed; true"),
    );
    let out = p.run(&["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("rebuilding `up`"), "{}", stderr(&out));
    assert_eq!(p.read("cache/out/down/resumed"), "state\n");
}

#[test]
fn gc_reclaims_the_builds_of_a_node_removed_from_the_pipeline() {
    let p = Proj::new();
    p.write("pipelines/copy.toml", PIPELINE);
    p.build(&[]);
    p.build(&["-f", "pipelines/copy.toml"]);
    let count = p.read("cache/out/summary/count.txt");
    // Drop `summary` from the main pipeline only.
    let cut = PIPELINE.find("[nodes.summary]").unwrap();
    p.write("Pipeline.toml", &PIPELINE[..cut]);
    let (dry, _) = p.json(&["gc", "--grace", "0", "--dry-run"]);
    assert_eq!(dry["dropped_refs"], serde_json::json!(["summary"]), "{dry}");
    assert!(
        p.path("cache/refs/summary").exists(),
        "--dry-run dropped a ref"
    );
    let (r, _) = p.json(&["gc", "--grace", "0"]);
    assert_eq!(r["dropped_refs"], serde_json::json!(["summary"]));
    assert!(!p.path("cache/refs/summary").exists());
    assert!(!p.path("cache/out/summary").exists());
    // The other pipeline file still declares it: its build survives.
    assert_eq!(
        p.read("cache/views/pipelines+copy/out/summary/count.txt"),
        count
    );
    assert!(
        p.build(&["-f", "pipelines/copy.toml"])
            .values()
            .all(|s| s == "fresh")
    );
    let (v, code) = p.json(&["verify"]);
    assert_eq!(code, 0, "{v}");
}

#[test]
fn verbose_build_says_why_each_node_runs() {
    let p = Proj::new();
    p.build(&[]);
    p.write(
        "Pipeline.toml",
        &PIPELINE.replace("context = 8", "context = 7"),
    );
    let out = p.run(&["build", "-v"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("why packed: parameter `context` changed: 8 → 7"),
        "{err}"
    );
    assert!(!err.contains("why tokens"), "{err}");
}

#[test]
fn gc_max_size_drops_temporaries_only_when_over_the_limit() {
    let pipeline = r#"
[nodes.trainer]
kind = "command"
run = "head -c 5000 /dev/zero > $PAI_OUT/model.bin; head -c 20000 /dev/urandom > $PAI_OUT/optimizer.bin"
outputs = ["model.bin", "optimizer.bin"]
temporary = ["optimizer.bin"]
"#;
    let p = Proj::with_pipeline(pipeline);
    p.build(&[]);
    let (r, _) = p.json(&["gc", "--grace", "0", "--max-size", "1M"]);
    assert_eq!(r["collected_outputs"], 0, "under the limit: {r}");
    assert!(p.path("cache/out/trainer/optimizer.bin").exists());
    let (r, _) = p.json(&["gc", "--grace", "0", "--max-size", "10K"]);
    assert_eq!(r["collected_outputs"], 1, "{r}");
    assert!(!p.path("cache/out/trainer/optimizer.bin").exists());
    assert_eq!(r["kept_bytes"], 5000);
}

#[test]
fn bench_engine_measures_what_syncing_costs_on_the_data_end() {
    let p = Proj::new();
    let (r, code) = p.json(&[
        "bench", "engine", "--files", "40", "--bytes", "400K", "--runs", "2",
    ]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["data_end_targets"], serde_json::json!(["packed"]), "{r}");
    let synced = r["data_end_build_seconds_synced"].as_f64().unwrap();
    let unsynced = r["data_end_build_seconds_unsynced"].as_f64().unwrap();
    assert!(synced > 0.0 && unsynced > 0.0, "{r}");
    assert!((r["data_end_sync_cost"].as_f64().unwrap() - synced / unsynced).abs() < 1e-9);
    // The scratch store is gone; the project's own store holds the timed builds.
    assert!(p.build(&["packed"]).values().all(|s| s == "fresh"));
}

/// A command node over `notes/a.txt`, built in `versions` versions (the last current).
fn versions_built(versions: usize, gc_table: &str) -> Proj {
    let p = Proj::with_pipeline(&format!(
        "{gc_table}[nodes.notes]\nkind = \"source\"\npath = \"notes\"\n\
         [nodes.n]\nkind = \"command\"\ninputs = [\"notes\"]\n\
         run = \"cat $PAI_IN_NOTES/a.txt > $PAI_OUT/n\"\noutputs = [\"n\"]\n"
    ));
    for v in 0..versions {
        p.write("notes/a.txt", &format!("version {v}\n"));
        p.build(&[]);
    }
    p
}

#[test]
fn gc_keeps_what_is_younger_than_the_grace_period_and_says_so() {
    let p = versions_built(2, "");
    // Default grace (1h): the older build was just written, so it stays.
    let (r, code) = p.json(&["gc"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["deleted_objects"], 0, "{r}");
    assert_eq!(r["deleted_records"], 0, "{r}");
    assert!(
        r["grace_objects"].as_u64().unwrap() == 0,
        "its record keeps its objects: {r}"
    );
    assert!(
        r["kept_builds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["by"] == "grace"),
        "{r}"
    );
    let text = String::from_utf8_lossy(&p.run(&["gc", "--dry-run"]).stdout).to_string();
    assert!(
        text.contains("younger than the grace period (1h)"),
        "{text}"
    );
    // An object no record names, young: kept and counted as such.
    let stray = p.path("cache/objects/ff/stray");
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, b"stray").unwrap();
    let (r, _) = p.json(&["gc", "--grace", "1h"]);
    assert_eq!(r["grace_objects"], 1, "{r}");
    assert!(stray.exists());
    // Grace 0: collected now.
    let (r, _) = p.json(&["gc", "--grace", "0"]);
    assert_eq!(r["deleted_records"], 2, "the older `notes` and `n`: {r}");
    assert!(r["deleted_objects"].as_u64().unwrap() >= 2, "{r}");
    assert!(!stray.exists());
}

#[test]
fn gc_dry_run_names_the_root_that_keeps_each_build_and_the_bytes_of_each_deletion() {
    let p = versions_built(3, "");
    p.write("pipelines/side.toml", &p.read("Pipeline.toml"));
    p.build(&["-f", "pipelines/side.toml"]);
    let (r, code) = p.json(&["gc", "--dry-run", "--grace", "0", "--keep", "1"]);
    assert_eq!(code, 0, "{r}");
    let kept = r["kept_builds"].as_array().unwrap();
    let of = |node: &str| -> Vec<&serde_json::Value> {
        kept.iter().filter(|b| b["node"] == node).collect()
    };
    // The current build of `n` (shared by both files: one record), and one older.
    let n = of("n");
    assert_eq!(n.len(), 2, "{r}");
    assert!(
        n.iter().any(|b| b["by"]["current"]["view"].is_string()),
        "{r}"
    );
    assert!(n.iter().any(|b| b["by"]["keep"]["rank"] == 1), "{r}");
    let deleted = r["deleted_builds"].as_array().unwrap();
    assert!(
        deleted
            .iter()
            .any(|b| b["node"] == "n" && b["bytes"] == "version 0\n".len()),
        "{r}"
    );
    let out = p.run(&["gc", "--dry-run", "--grace", "0", "--keep", "1"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("current build in "), "{text}");
    assert!(text.contains("--keep: older build #1"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("delete") && l.contains(" n ")),
        "{text}"
    );
    // A dry run deletes nothing.
    let (again, _) = p.json(&["gc", "--dry-run", "--grace", "0", "--keep", "1"]);
    assert_eq!(again["deleted_builds"], r["deleted_builds"]);
}

#[test]
fn the_gc_table_sets_defaults_that_the_command_line_overrides() {
    let p = versions_built(3, "[gc]\nkeep = 1\ngrace = \"0\"\n");
    // Older builds of `n` gc would delete.
    let deleted = |r: &serde_json::Value| {
        r["deleted_builds"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["node"] == "n")
            .count()
    };
    let (r, _) = p.json(&["gc", "--dry-run"]);
    assert_eq!(r["settings"]["keep"], 1, "{r}");
    assert_eq!(r["settings"]["grace"], 0, "{r}");
    assert_eq!(
        deleted(&r),
        1,
        "keep = 1 keeps one of the two older builds: {r}"
    );
    let (r, _) = p.json(&["gc", "--dry-run", "--keep", "0"]);
    assert_eq!(deleted(&r), 2, "{r}");
    let (r, _) = p.json(&["gc", "--dry-run", "--grace", "1h"]);
    assert_eq!(deleted(&r), 0, "{r}");
    // A bad value is a plan-time error with its place and the fix.
    let bad = p
        .read("Pipeline.toml")
        .replace("grace = \"0\"", "grace = \"soon\"");
    p.write("Pipeline.toml", &bad);
    let out = p.run(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("Pipeline.toml:3:") && err.contains("not a duration"),
        "{err}"
    );
    assert!(err.contains("grace = \"1h\""), "{err}");
}

#[test]
fn status_after_a_failed_command_points_at_its_log_and_promises_no_resume() {
    let p = Proj::with_pipeline(
        "[nodes.c]\nkind = \"command\"\nrun = \"echo oops >&2; exit 3\"\noutputs = [\"x\"]\n",
    );
    let out = p.run(&["build"]);
    assert_eq!(out.status.code(), Some(1));
    let (s, _) = p.json(&["status"]);
    let reasons = s["nodes"][0]["reasons"].to_string();
    assert!(reasons.contains("its log"), "{reasons}");
    assert!(!reasons.contains("resumes"), "{reasons}");
}
