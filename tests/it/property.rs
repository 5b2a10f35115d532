//! A property test of the store: random DAGs of `source` and `command` nodes driven
//! through random sequences of edits (source files, command text, the DAG's shape),
//! reverts (of the pipeline file or a source file), builds (everything or one target),
//! `gc` (`--keep N`, `--temporaries`, `--max-size`, `--dry-run`) and SIGKILLs of
//! `build` and `gc` at random moments. After every step, read independently of pai:
//!
//! - every ref names a record that exists, is for that key, and whose live outputs
//!   are objects that exist, are read-only, and hash (BLAKE3) to their name and size;
//! - every object in the store hashes to its name;
//! - `pai verify` agrees;
//! - after a completed `gc`, `out/<node>/` shows every current build's live outputs;
//!
//! and after a build that completed: every node it built has a ref, `out/<node>/` holds
//! the current build's live outputs (and none of its collected ones), byte for byte what
//! running the same shell commands by hand gives, and a dry run finds everything fresh.
//!
//! `PAI_PROP_SEQUENCES` (default 10) sequences of `PAI_PROP_STEPS` (default 50) steps
//! (about 40 s on two cores), from `PAI_PROP_SEED`; sequence `i` uses seed
//! `PAI_PROP_SEED + i`, so a failure reproduces with `PAI_PROP_SEED=<its seed>
//! PAI_PROP_SEQUENCES=1` (up to where a kill lands). A failed sequence keeps its
//! project folder and prints where.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number; unset it or fix it")),
        Err(_) => default,
    }
}

// ---------------------------------------------------------------- the model

#[derive(Clone, Debug)]
enum Node {
    /// `path = "<name>"`: a folder of `f<k>.txt` files.
    Source {
        name: String,
    },
    Command(Cmd),
}

#[derive(Clone, Debug)]
struct Cmd {
    name: String,
    /// Indices of earlier nodes (a DAG by construction).
    inputs: Vec<String>,
    /// Which transformation `run` applies, and a salt echoed into the output.
    variant: usize,
    salt: u32,
    /// Writes `tmp.txt`, declared temporary.
    tmp: bool,
    /// Writes `sub/n.txt`.
    sub: bool,
    /// Reads its inputs' `tmp.txt` where they write one.
    reads_tmp: bool,
    /// Sleeps a little first, so a kill can land inside it.
    slow: bool,
}

#[derive(Clone, Debug)]
struct Model {
    nodes: Vec<Node>,
    next_id: usize,
}

impl Model {
    fn name(n: &Node) -> &str {
        match n {
            Node::Source { name } => name,
            Node::Command(c) => &c.name,
        }
    }

    fn get(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| Model::name(n) == name)
    }

    fn env(name: &str) -> String {
        format!("$PAI_IN_{}", name.to_uppercase().replace('-', "_"))
    }

    /// The files a command reads from its inputs, as shell words.
    fn reads(&self, c: &Cmd) -> Vec<String> {
        let mut words = Vec::new();
        for i in &c.inputs {
            match self.get(i) {
                Some(Node::Source { .. }) => words.push(format!("{}/*.txt", Model::env(i))),
                Some(Node::Command(d)) => {
                    words.push(format!("{}/out.txt", Model::env(i)));
                    if d.tmp && c.reads_tmp {
                        words.push(format!("{}/tmp.txt", Model::env(i)));
                    }
                    if d.sub {
                        words.push(format!("{}/sub/n.txt", Model::env(i)));
                    }
                }
                None => unreachable!("input {i} of {} is not a node", c.name),
            }
        }
        words
    }

    fn run_text(&self, c: &Cmd) -> String {
        let ins = self.reads(c).join(" ");
        let mut s = String::new();
        if c.slow {
            s.push_str("sleep 0.03; ");
        }
        s.push_str(&match c.variant {
            0 => format!("cat {ins} | sort > $PAI_OUT/out.txt"),
            1 => format!("cat {ins} | wc -l > $PAI_OUT/out.txt"),
            2 => format!("cat {ins} | cksum > $PAI_OUT/out.txt"),
            _ => format!("cat {ins} | tr a-z A-Z | sort -r > $PAI_OUT/out.txt"),
        });
        if c.salt > 0 {
            s.push_str(&format!("; echo salt-{} >> $PAI_OUT/out.txt", c.salt));
        }
        if c.tmp {
            // Bigger than the rest, so --max-size has something to weigh.
            s.push_str(&format!("; cat {ins} {ins} {ins} {ins} > $PAI_OUT/tmp.txt"));
        }
        if c.sub {
            s.push_str(&format!(
                "; mkdir -p $PAI_OUT/sub && cat {ins} | wc -c > $PAI_OUT/sub/n.txt"
            ));
        }
        s
    }

    fn outputs(c: &Cmd) -> Vec<&'static str> {
        let mut o = vec!["out.txt"];
        if c.tmp {
            o.push("tmp.txt");
        }
        if c.sub {
            o.push("sub/n.txt");
        }
        o
    }

    fn render(&self) -> String {
        let mut s = String::from("# generated by tests/property.rs\n");
        for n in &self.nodes {
            match n {
                Node::Source { name } => {
                    let _ = write!(
                        s,
                        "\n[nodes.{name}]\nkind = \"source\"\npath = \"{name}\"\n"
                    );
                }
                Node::Command(c) => {
                    let q = |v: &[&str]| {
                        v.iter()
                            .map(|x| format!("{x:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    let ins: Vec<&str> = c.inputs.iter().map(|s| s.as_str()).collect();
                    let _ = write!(
                        s,
                        "\n[nodes.{}]\nkind = \"command\"\ninputs = [{}]\nrun = {:?}\noutputs = [{}]\n",
                        c.name,
                        q(&ins),
                        self.run_text(c),
                        q(&Model::outputs(c)),
                    );
                    if c.tmp {
                        s.push_str("temporary = [\"tmp.txt\"]\n");
                    }
                }
            }
        }
        s
    }

    fn random(rng: &mut Rng) -> Model {
        let mut m = Model {
            nodes: Vec::new(),
            next_id: 0,
        };
        for _ in 0..1 + rng.below(3) {
            let name = format!("s{}", m.next_id);
            m.next_id += 1;
            m.nodes.push(Node::Source { name });
        }
        for _ in 0..2 + rng.below(6) {
            m.add_command(rng);
        }
        m
    }

    fn add_command(&mut self, rng: &mut Rng) {
        let name = format!("c{}", self.next_id);
        self.next_id += 1;
        let mut inputs: Vec<String> = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let n = Model::name(&self.nodes[rng.below(self.nodes.len())]).to_string();
            if !inputs.contains(&n) {
                inputs.push(n);
            }
        }
        self.nodes.push(Node::Command(Cmd {
            name,
            inputs,
            variant: rng.below(4),
            salt: 0,
            tmp: rng.pct(40),
            sub: rng.pct(25),
            reads_tmp: rng.pct(50),
            slow: rng.pct(30),
        }));
    }

    fn commands(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| matches!(self.nodes[i], Node::Command(_)))
            .collect()
    }

    fn sources(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter_map(|n| match n {
                Node::Source { name } => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    /// Commands no other node reads.
    fn sinks(&self) -> Vec<usize> {
        self.commands()
            .into_iter()
            .filter(|&i| {
                let name = Model::name(&self.nodes[i]);
                !self.nodes.iter().any(|n| match n {
                    Node::Command(c) => c.inputs.iter().any(|x| x == name),
                    _ => false,
                })
            })
            .collect()
    }

    /// `target` and everything it needs, inputs first.
    fn closure(&self, target: &str) -> Vec<String> {
        let mut need = vec![target.to_string()];
        let mut i = 0;
        while i < need.len() {
            if let Some(Node::Command(c)) = self.get(&need[i]) {
                for x in &c.inputs {
                    if !need.contains(x) {
                        need.push(x.clone());
                    }
                }
            }
            i += 1;
        }
        self.nodes
            .iter()
            .map(|n| Model::name(n).to_string())
            .filter(|n| need.contains(n))
            .collect()
    }
}

// ---------------------------------------------------------------- reading the store

fn blake3_file(p: &Path) -> Result<(String, u64), String> {
    let bytes = std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
    Ok((
        blake3::hash(&bytes).to_hex().to_string(),
        bytes.len() as u64,
    ))
}

fn object_path(cache: &Path, hash: &str) -> PathBuf {
    cache.join("objects").join(&hash[..2]).join(&hash[2..])
}

/// node → its current record, read from `cache/refs` and `cache/records`; checks
/// every ref and every object on the way. Errors name what is wrong.
fn check_store(dir: &Path) -> Result<BTreeMap<String, serde_json::Value>, String> {
    use std::os::unix::fs::PermissionsExt;
    let cache = dir.join("cache");
    let mut current = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(cache.join("refs")) {
        for e in rd.flatten() {
            let node = e.file_name().to_string_lossy().to_string();
            if node.starts_with('.') {
                continue; // a half-written ref of a killed run
            }
            let key =
                std::fs::read_to_string(e.path()).map_err(|err| format!("ref {node}: {err}"))?;
            let key = key.trim();
            if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("ref {node} holds {key:?}, not a key"));
            }
            let rec_path = cache.join("records").join(format!("{key}.json"));
            let rec: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&rec_path)
                    .map_err(|err| format!("ref {node}: its record {key}: {err}"))?,
            )
            .map_err(|err| format!("ref {node}: its record {key} does not parse: {err}"))?;
            // (Its `node` may be another: nodes alike in kind, parameters and inputs
            // share a key, and so a record.)
            if rec["key"] != key {
                return Err(format!("ref {node}: record {key} says key {}", rec["key"]));
            }
            for o in rec["outputs"].as_array().into_iter().flatten() {
                if o["collected"].as_bool() == Some(true) {
                    continue;
                }
                let (name, hash) = (o["name"].as_str().unwrap(), o["hash"].as_str().unwrap());
                let obj = object_path(&cache, hash);
                let meta = std::fs::symlink_metadata(&obj).map_err(|err| {
                    format!("{node}/{name}: the object {hash} of its current build: {err}")
                })?;
                if !meta.file_type().is_file() {
                    return Err(format!("{node}/{name}: object {hash} is not a file"));
                }
                let mode = meta.permissions().mode();
                if mode & 0o222 != 0 {
                    return Err(format!(
                        "{node}/{name}: object {hash} is writable (mode {mode:o})"
                    ));
                }
                let (h, n) = blake3_file(&obj)?;
                if h != hash || Some(n) != o["bytes"].as_u64() {
                    return Err(format!(
                        "{node}/{name}: object {hash} holds {n} bytes hashing to {h}"
                    ));
                }
            }
            current.insert(node, rec);
        }
    }
    // Every object, referenced or not, is what its name says.
    if let Ok(rd) = std::fs::read_dir(cache.join("objects")) {
        for sub in rd.flatten() {
            let prefix = sub.file_name().to_string_lossy().to_string();
            for e in std::fs::read_dir(sub.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = format!("{prefix}{}", e.file_name().to_string_lossy());
                if name.contains('.') {
                    continue; // a temporary file of a write in progress
                }
                let (h, _) = blake3_file(&e.path())?;
                if h != name {
                    return Err(format!("object {name} hashes to {h}"));
                }
            }
        }
    }
    Ok(current)
}

/// `out/<node>/` of every current build shows exactly its live outputs: what a
/// completed `gc` leaves (it relinks what a killed run left behind).
fn check_out(dir: &Path, current: &BTreeMap<String, serde_json::Value>) -> Result<(), String> {
    let cache = dir.join("cache");
    for (node, rec) in current {
        for o in rec["outputs"].as_array().into_iter().flatten() {
            let (name, hash) = (o["name"].as_str().unwrap(), o["hash"].as_str().unwrap());
            let shown = cache.join("out").join(node).join(name);
            if o["collected"].as_bool() == Some(true) {
                if shown.exists() {
                    return Err(format!(
                        "out/{node}/{name} was collected but is still there"
                    ));
                }
                continue;
            }
            let (h, _) = blake3_file(&shown)?;
            if h != hash {
                return Err(format!(
                    "out/{node}/{name} hashes to {h}, its current build's object is {hash}"
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- a sequence

struct Run<'a> {
    p: Proj,
    rng: Rng,
    model: Model,
    /// Every pipeline the sequence wrote, for reverts.
    models: Vec<Model>,
    /// source/file → every content it had (the last is the current one, "" = deleted).
    files: BTreeMap<String, Vec<String>>,
    log: Vec<String>,
    build_time: Duration,
    stats: &'a mut Stats,
}

#[derive(Default, Debug)]
struct Stats {
    sequences: u64,
    steps: u64,
    builds: u64,
    completed_full_builds: u64,
    reference_checks: u64,
    gcs: u64,
    reverts: u64,
    edits: u64,
    killed_builds: u64,
    killed_gcs: u64,
}

impl Run<'_> {
    fn say(&mut self, what: String) {
        self.log.push(what);
    }

    fn write_pipeline(&mut self) {
        self.p.write("Pipeline.toml", &self.model.render());
        self.models.push(self.model.clone());
    }

    fn set_file(&mut self, rel: &str, content: &str) {
        if content.is_empty() {
            std::fs::remove_file(self.p.path(rel)).ok();
        } else {
            self.p.write(rel, content);
        }
        self.files
            .entry(rel.to_string())
            .or_default()
            .push(content.to_string());
    }

    /// Files of a source that exist now.
    fn live_files(&self, source: &str) -> Vec<String> {
        self.files
            .iter()
            .filter(|(k, v)| {
                k.starts_with(&format!("{source}/")) && v.last().is_some_and(|c| !c.is_empty())
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn random_text(&mut self) -> String {
        let seed = self.rng.next();
        text(seed, 5 + self.rng.below(60))
    }

    fn pai(&self, args: &[&str]) -> std::process::Output {
        self.p.run(args)
    }

    /// Waits until no process works in the project folder any more: a command a
    /// killed `pai` left running (orphaned) would otherwise still be writing.
    fn wait_for_orphans(&self) {
        let dir = self.p.dir().canonicalize().unwrap();
        let start = Instant::now();
        loop {
            let busy = std::fs::read_dir("/proc")
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
                })
                .any(|e| {
                    std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(&dir))
                });
            if !busy {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "a process kept running in {} for 30 s after pai was killed",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn step(&mut self) -> Result<(), String> {
        let roll = self.rng.below(100);
        let mut completed_build: Option<Vec<String>> = None;
        let mut completed_gc = false;
        match roll {
            // Edit a source file: change, add or delete one (a source keeps one file).
            0..=14 => {
                self.stats.edits += 1;
                let sources = self.model.sources();
                let s = sources[self.rng.below(sources.len())].clone();
                let live = self.live_files(&s);
                let what = self.rng.below(4);
                let text = self.random_text();
                if what == 0 || live.is_empty() {
                    let rel = format!("{s}/f{}.txt", self.rng.below(6));
                    self.say(format!("edit: write {rel}"));
                    self.set_file(&rel, &text);
                } else if what == 1 && live.len() > 1 {
                    let rel = live[self.rng.below(live.len())].clone();
                    self.say(format!("edit: delete {rel}"));
                    self.set_file(&rel, "");
                } else {
                    let rel = live[self.rng.below(live.len())].clone();
                    self.say(format!("edit: rewrite {rel}"));
                    self.set_file(&rel, &text);
                }
            }
            // Edit a command: its text, what it writes, what it reads.
            15..=26 => {
                self.stats.edits += 1;
                let cmds = self.model.commands();
                let i = cmds[self.rng.below(cmds.len())];
                let choice = self.rng.below(6);
                let salt = self.rng.below(4) as u32;
                let variant = self.rng.below(4);
                if let Node::Command(c) = &mut self.model.nodes[i] {
                    match choice {
                        0 | 1 => c.variant = variant,
                        2 => c.salt = salt,
                        3 => c.tmp = !c.tmp,
                        4 => c.sub = !c.sub,
                        _ => c.reads_tmp = !c.reads_tmp,
                    }
                    let msg = format!("edit: command {} ({choice})", c.name);
                    self.say(msg);
                }
                self.write_pipeline();
            }
            // Change the DAG's shape: a new command, or a sink dropped.
            27..=31 => {
                self.stats.edits += 1;
                let sinks = self.model.sinks();
                if self.rng.pct(50) && self.model.commands().len() > 1 && !sinks.is_empty() {
                    let i = sinks[self.rng.below(sinks.len())];
                    self.say(format!("edit: drop {}", Model::name(&self.model.nodes[i])));
                    self.model.nodes.remove(i);
                } else {
                    self.model.add_command(&mut self.rng);
                    let n = self.model.nodes.last().unwrap();
                    self.say(format!("edit: add {}", Model::name(n)));
                }
                self.write_pipeline();
            }
            // Revert the pipeline file or a source file to an earlier version.
            32..=41 => {
                self.stats.reverts += 1;
                if self.rng.pct(50) && self.models.len() > 1 {
                    let k = self.rng.below(self.models.len() - 1);
                    self.model = self.models[k].clone();
                    self.say(format!("revert: Pipeline.toml to version {k}"));
                    self.write_pipeline();
                } else {
                    let keys: Vec<String> = self.files.keys().cloned().collect();
                    let rel = keys[self.rng.below(keys.len())].clone();
                    let versions = self.files[&rel].clone();
                    let k = self.rng.below(versions.len());
                    let source = rel.split('/').next().unwrap().to_string();
                    // A source keeps at least one file.
                    if versions[k].is_empty() && self.live_files(&source) == vec![rel.clone()] {
                        self.say(format!("revert: {rel} (skipped: its source's last file)"));
                    } else {
                        self.say(format!("revert: {rel} to version {k}"));
                        self.set_file(&rel, &versions[k]);
                    }
                }
            }
            // Build everything, or one target.
            42..=66 => {
                self.stats.builds += 1;
                let names: Vec<String> = self
                    .model
                    .nodes
                    .iter()
                    .map(|n| Model::name(n).to_string())
                    .collect();
                let target = self
                    .rng
                    .pct(40)
                    .then(|| names[self.rng.below(names.len())].clone());
                let jobs = (1 + self.rng.below(3)).to_string();
                let mut args = vec!["--json", "build", "-j", jobs.as_str()];
                if let Some(t) = &target {
                    args.push(t);
                }
                self.say(format!("build {}", args[1..].join(" ")));
                let t = Instant::now();
                let out = self.pai(&args);
                self.build_time = (self.build_time + t.elapsed()) / 2;
                if !out.status.success() {
                    return Err(format!(
                        "pai {args:?} failed: {}\nstdout {}\nstderr {}",
                        out.status,
                        String::from_utf8_lossy(&out.stdout),
                        stderr(&out)
                    ));
                }
                completed_build = Some(match &target {
                    Some(t) => self.model.closure(t),
                    None => names,
                });
            }
            // gc with random options.
            67..=81 => {
                self.stats.gcs += 1;
                let keep = self.rng.below(3).to_string();
                let mut args = vec!["--json", "gc", "--keep", keep.as_str()];
                if self.rng.pct(40) {
                    args.push("--temporaries");
                }
                if self.rng.pct(30) {
                    args.push("--max-size");
                    args.push(["1", "300", "2K", "1M"][self.rng.below(4)]);
                }
                if self.rng.pct(10) {
                    args.push("--dry-run");
                }
                // Mostly no grace period, so unreachable builds really go;
                // sometimes the default hour, which must keep them.
                if self.rng.pct(85) {
                    args.extend(["--grace", "0"]);
                }
                self.say(args[1..].join(" "));
                let out = self.pai(&args);
                if !out.status.success() {
                    return Err(format!(
                        "pai {args:?} failed: {}\nstdout {}\nstderr {}",
                        out.status,
                        String::from_utf8_lossy(&out.stdout),
                        stderr(&out)
                    ));
                }
                completed_gc = !args.contains(&"--dry-run");
            }
            // SIGKILL a build (or a gc) at a random moment.
            _ => {
                let gc = self.rng.pct(20);
                let args: Vec<&str> = if gc {
                    vec!["gc", "--temporaries", "--grace", "0"]
                } else {
                    vec!["build", "-j", "2"]
                };
                let span = if gc {
                    Duration::from_millis(40)
                } else {
                    self.build_time.max(Duration::from_millis(20))
                };
                let at = Duration::from_micros(self.rng.next() % (span.as_micros() as u64 + 1));
                self.say(format!("kill -9 `pai {}` after {at:?}", args.join(" ")));
                let mut child = self
                    .p
                    .cmd(&args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                std::thread::sleep(at);
                child.kill().ok(); // SIGKILL
                let status = child.wait().unwrap();
                if status.code().is_none() {
                    if gc {
                        self.stats.killed_gcs += 1;
                    } else {
                        self.stats.killed_builds += 1;
                    }
                }
                self.wait_for_orphans();
            }
        }
        if completed_gc {
            check_out(self.p.dir(), &check_store(self.p.dir())?)?;
        }
        self.check(completed_build.as_deref())
    }

    /// The invariant, and after a completed build its outputs against a re-run by hand.
    fn check(&mut self, built: Option<&[String]>) -> Result<(), String> {
        let current = check_store(self.p.dir())?;
        let out = self.pai(&["--json", "verify"]);
        if !out.status.success() {
            return Err(format!(
                "pai verify disagrees ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                stderr(&out)
            ));
        }
        let Some(built) = built else { return Ok(()) };
        // The outputs are what the commands write when run by hand, in a scratch folder.
        let scratch = tempfile::tempdir().unwrap();
        for name in built {
            let Some(rec) = current.get(name) else {
                return Err(format!("{name} was built but has no ref"));
            };
            let Some(Node::Command(c)) = self.model.get(name) else {
                continue;
            };
            let mut sh = std::process::Command::new("sh");
            sh.arg("-c")
                .arg(self.model.run_text(c))
                .current_dir(self.p.dir())
                .env("PAI_OUT", scratch.path().join(name));
            for i in &c.inputs {
                let dir = match self.model.get(i) {
                    Some(Node::Source { name }) => self.p.path(name),
                    _ => scratch.path().join(i),
                };
                sh.env(format!("PAI_IN_{}", i.to_uppercase()), dir);
            }
            std::fs::create_dir_all(scratch.path().join(name)).unwrap();
            let o = sh.output().unwrap();
            if !o.status.success() {
                return Err(format!(
                    "the command of {name} failed by hand: {}",
                    stderr(&o)
                ));
            }
            let out_dir = self.p.path(&format!("cache/out/{name}"));
            for o in rec["outputs"].as_array().into_iter().flatten() {
                let oname = o["name"].as_str().unwrap();
                let shown = out_dir.join(oname);
                if o["collected"].as_bool() == Some(true) {
                    if shown.exists() {
                        return Err(format!("{name}/{oname} was collected but is in out/"));
                    }
                    continue;
                }
                let (a, b) = (
                    std::fs::read(&shown).map_err(|e| format!("{}: {e}", shown.display()))?,
                    std::fs::read(scratch.path().join(name).join(oname)).unwrap(),
                );
                if a != b {
                    return Err(format!(
                        "{name}/{oname}: out/ holds {:?}, the command by hand writes {:?}",
                        String::from_utf8_lossy(&a),
                        String::from_utf8_lossy(&b)
                    ));
                }
            }
        }
        self.stats.reference_checks += 1;
        if built.len() == self.model.nodes.len() {
            self.stats.completed_full_builds += 1;
            // Nothing left to do.
            let (v, code) = self.p.json(&["build", "--dry-run"]);
            let stale: Vec<&serde_json::Value> = v["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| n["action"] != "fresh")
                .collect();
            if code != 0 || !stale.is_empty() {
                return Err(format!(
                    "after a full build a dry run is not all fresh: {stale:?}"
                ));
            }
        }
        Ok(())
    }
}

fn sequence(seed: u64, steps: u64, stats: &mut Stats) {
    let mut rng = Rng::new(seed);
    let model = Model::random(&mut rng);
    let mut run = Run {
        p: Proj::with_pipeline(""),
        rng,
        model,
        models: Vec::new(),
        files: BTreeMap::new(),
        log: Vec::new(),
        build_time: Duration::from_millis(100),
        stats,
    };
    for s in run.model.sources() {
        for k in 0..1 + run.rng.below(3) {
            let t = run.random_text();
            run.set_file(&format!("{s}/f{k}.txt"), &t);
        }
    }
    run.write_pipeline();
    run.stats.sequences += 1;
    for step in 0..steps {
        run.stats.steps += 1;
        if let Err(e) = run.step() {
            let tail: Vec<String> = run.log.iter().rev().take(25).rev().cloned().collect();
            let pipeline = run.model.render();
            let kept = run.p.tmp.keep();
            panic!(
                "sequence seed {seed} (reproduce: PAI_PROP_SEED={seed} PAI_PROP_SEQUENCES=1 \
                 PAI_PROP_STEPS={steps}), step {step}: {e}\n\nthe steps so far (last 25):\n  {}\n\n\
                 Pipeline.toml:\n{}\nproject kept at {}",
                tail.join("\n  "),
                pipeline,
                kept.display()
            );
        }
    }
}

#[test]
fn random_edits_builds_reverts_gcs_and_kills_keep_every_current_build_whole() {
    let seed = env_u64("PAI_PROP_SEED", 0x5eed_2026);
    let sequences = env_u64("PAI_PROP_SEQUENCES", 10);
    let steps = env_u64("PAI_PROP_STEPS", 50);
    let mut stats = Stats::default();
    let t = Instant::now();
    for i in 0..sequences {
        sequence(seed.wrapping_add(i), steps, &mut stats);
    }
    eprintln!("property: {stats:?} in {:.1} s", t.elapsed().as_secs_f64());
    // The run reached what the test is named for.
    assert!(
        stats.killed_builds > 0
            && stats.gcs > 0
            && stats.reverts > 0
            && stats.edits > 0
            && stats.completed_full_builds > 0,
        "{stats:?}"
    );
}

/// Found by the property test: two consumers of one producer's temporaries, after
/// `gc --temporaries`, both rebuilt the producer at once (`-j 2`) in the same tmp
/// folder, and the build failed with "did not write its declared output".
#[test]
fn two_consumers_of_collected_temporaries_rebuild_their_producer_once_at_a_time() {
    // The producer waits (at most a second) until a second run of it has started,
    // when `barrier/` exists: two runs at once meet there, one run goes on alone.
    let run = "if [ -d barrier ]; then touch barrier/$$; i=0; \
               while [ $(ls barrier | wc -l) -lt 2 ] && [ $i -lt 100 ]; do sleep 0.01; i=$((i+1)); done; fi; \
               cat $PAI_IN_NOTES/*.txt > $PAI_OUT/out.txt; cat $PAI_IN_NOTES/*.txt $PAI_IN_NOTES/*.txt > $PAI_OUT/tmp.txt";
    let pipeline = |edit: bool| {
        let salt = |f: &str| {
            if edit {
                format!("; echo 2 >> $PAI_OUT/{f}")
            } else {
                String::new()
            }
        };
        let (sa, sb) = (salt("a.txt"), salt("b.txt"));
        format!(
            "[nodes.notes]\nkind = \"source\"\npath = \"notes\"\n\
             [nodes.p]\nkind = \"command\"\ninputs = [\"notes\"]\nrun = {run:?}\n\
             outputs = [\"out.txt\", \"tmp.txt\"]\ntemporary = [\"tmp.txt\"]\n\
             [nodes.a]\nkind = \"command\"\ninputs = [\"p\"]\n\
             run = \"wc -c < $PAI_IN_P/tmp.txt > $PAI_OUT/a.txt{sa}\"\noutputs = [\"a.txt\"]\n\
             [nodes.b]\nkind = \"command\"\ninputs = [\"p\"]\n\
             run = \"sort $PAI_IN_P/tmp.txt > $PAI_OUT/b.txt{sb}\"\noutputs = [\"b.txt\"]\n"
        )
    };
    let p = Proj::with_pipeline(&pipeline(false));
    p.build(&[]);
    let (_, code) = p.json(&["gc", "--temporaries"]);
    assert_eq!(code, 0);
    // Both consumers change, so both must read the producer's temporaries again.
    p.write("Pipeline.toml", &pipeline(true));
    std::fs::create_dir(p.path("barrier")).unwrap();
    let out = p.run(&["--json", "build", "-j", "2"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let s = statuses(&serde_json::from_slice(&out.stdout).unwrap());
    assert_eq!(
        (s["a"].as_str(), s["b"].as_str()),
        ("built", "built"),
        "{s:?}"
    );
    check_store(p.dir()).unwrap();
    assert_eq!(
        std::fs::read_to_string(p.path("cache/out/p/tmp.txt")).unwrap(),
        "alpha\nbeta\nalpha\nbeta\n"
    );
}
