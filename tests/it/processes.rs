//! The processes a `command` node starts: stopped with pai, ended with their
//! command, unable to change a stored object afterwards, and their output
//! streamed to a log rather than held in memory; and what a command sees of
//! a source: exactly its selected files.

use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Waits (polling) until `path` exists; panics after `secs`.
fn wait_for(path: &Path, secs: u64) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{} did not appear within {secs} s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` runs (a zombie has ended: only its parent has not
/// read its status yet).
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    !(state.starts_with('Z') || state.starts_with('X'))
}

/// Waits (polling) until process `pid` has ended; false after `secs`.
fn ends_within(pid: i32, secs: u64) -> bool {
    let start = Instant::now();
    while alive(pid) {
        if start.elapsed() > Duration::from_secs(secs) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

fn pid_in(p: &Proj, rel: &str) -> i32 {
    p.read(rel).trim().parse().unwrap()
}

/// Waits for a child, killing it after `secs`.
fn exit_within(child: &mut Child, secs: u64) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            child.kill().ok();
            panic!("pai did not exit within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, sig: i32) {
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Two command nodes that each start a background job and wait; each writes
/// its shell's and its job's process ids, then `<node>.started`. With
/// `stubborn`, the job ignores SIGTERM.
fn waiting_pipeline(stubborn: bool) -> String {
    let job = if stubborn {
        "sh -c 'trap \\\"\\\" TERM; while :; do sleep 0.05; done' &"
    } else {
        "sleep 60 &"
    };
    let mut s = String::new();
    for n in ["a", "b"] {
        s += &format!(
            "[nodes.{n}]\nkind = \"command\"\n\
             run = \"echo $$ > {n}.sh; {job} echo $! > {n}.job; touch {n}.started; wait\"\n\
             outputs = [\"o\"]\n"
        );
    }
    s
}

/// Stops a build of two waiting commands with `sig`; returns pai's exit
/// status, its stderr and how long it took to exit.
fn stop_build(p: &Proj, sig: i32) -> (ExitStatus, String, Duration) {
    let mut child = p
        .cmd(&["build", "-j", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&p.path("a.started"), 20);
    wait_for(&p.path("b.started"), 20);
    let t = Instant::now();
    signal(&child, sig);
    let status = exit_within(&mut child, 20);
    let took = t.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status, err, took)
}

fn assert_commands_ended(p: &Proj) {
    for n in ["a", "b"] {
        for what in ["sh", "job"] {
            let pid = pid_in(p, &format!("{n}.{what}"));
            // pai ends its commands before it exits (a killed process may
            // take a moment to be gone).
            assert!(
                ends_within(pid, 2),
                "node {n}'s {what} (pid {pid}) outlived pai"
            );
        }
    }
}

#[test]
fn sigterm_ends_every_running_command_and_exits_143() {
    let p = Proj::with_pipeline(&waiting_pipeline(false));
    let (status, err, _) = stop_build(&p, libc::SIGTERM);
    assert_eq!(status.code(), Some(143), "{status:?}: {err}");
    assert!(err.contains("stopped by SIGTERM"), "{err}");
    assert_commands_ended(&p);
    // Nothing was committed, and the next build starts them again.
    assert!(!p.path("cache/refs/a").exists());
}

#[test]
fn sigint_ends_every_running_command_and_exits_130() {
    // An asynchronous job of a non-interactive shell ignores SIGINT: pai
    // must end the group with SIGTERM, not relay the SIGINT.
    let p = Proj::with_pipeline(&waiting_pipeline(false));
    let (status, err, _) = stop_build(&p, libc::SIGINT);
    assert_eq!(status.code(), Some(130), "{status:?}: {err}");
    assert!(err.contains("stopped by SIGINT"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("stopped")).count(),
        1,
        "one line says so: {err}"
    );
    assert_commands_ended(&p);
}

#[test]
fn a_command_that_ignores_sigterm_is_killed_after_a_short_grace() {
    let p = Proj::with_pipeline(&waiting_pipeline(true));
    let (status, err, took) = stop_build(&p, libc::SIGTERM);
    assert_eq!(status.code(), Some(143), "{status:?}: {err}");
    assert_commands_ended(&p);
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn a_background_child_cannot_change_a_stored_output_after_its_command_exits() {
    // One child stays in the command's process group; another escapes it
    // (setsid) holding the output open on fd 3 (the command waits until it
    // has). Both write after the command's shell has exited.
    let pipeline = r#"
[nodes.bg]
kind = "command"
run = """
echo one > $PAI_OUT/a
(sleep 0.3; echo more >> $PAI_OUT/a; touch late-in-group) > /dev/null 2>&1 &
exec 3>> $PAI_OUT/a
setsid sh -c 'touch escaped; sleep 0.6; echo more >&3; touch late-escaped' > /dev/null 2>&1 &
while [ ! -e escaped ]; do sleep 0.01; done
"""
outputs = ["a"]
"#;
    let p = Proj::with_pipeline(pipeline);
    p.build(&[]);
    // The escaped child writes after the in-group one would have.
    wait_for(&p.path("late-escaped"), 20);
    assert!(
        !p.path("late-in-group").exists(),
        "the command's process group outlived it"
    );
    let (v, code) = p.json(&["verify"]);
    assert_eq!(code, 0, "a stored object changed: {v}");
    let out = p.run(&["path", "bg", "a"]);
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\n");
}

#[test]
fn a_build_after_pai_was_killed_does_not_fail_on_a_folder_its_orphan_still_writes() {
    // The first run keeps writing files into its output folder until it is
    // killed; a later run just writes its output.
    let pipeline = r#"
[nodes.busy]
kind = "command"
run = """
if [ -e started ]; then echo done > $PAI_OUT/o; exit 0; fi
echo $$ > orphan.pid
touch started
i=0; while :; do i=$((i+1)); : > $PAI_OUT/f$((i % 50)); done
"""
outputs = ["o"]
"#;
    let p = Proj::with_pipeline(pipeline);
    let mut child = p
        .cmd(&["build"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&p.path("started"), 20);
    child.kill().unwrap(); // SIGKILL: pai cannot end its command
    child.wait().unwrap();
    let orphan = pid_in(&p, "orphan.pid");
    assert!(alive(orphan));
    let out = p.run(&["--json", "build"]);
    let err = stderr(&out);
    // Ended before any assertion can fail: the orphan writes forever.
    unsafe { libc::kill(orphan, libc::SIGKILL) };
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("process group {orphan}")),
        "the build names the process still writing: {err}"
    );
    assert!(ends_within(orphan, 10));
    // Once it is gone, gc removes what it left.
    let (v, code) = p.json(&["gc"]);
    assert_eq!(code, 0, "{v}");
    let tmp: Vec<_> = std::fs::read_dir(p.path("cache/tmp"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "{tmp:?}");
}

/// Peak resident memory (KiB) of `pai` run with `args`, with its stdout and
/// stderr.
/// The child is reaped by `wait4`, which also reports its peak.
#[allow(clippy::zombie_processes)]
fn peak_rss_kib(p: &Proj, args: &[&str]) -> (i32, String, i64) {
    let mut child = p
        .cmd(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut pipe, &mut s).unwrap();
        String::from_utf8_lossy(&s).to_string()
    });
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(r, child.id() as i32);
    let err = reader.join().unwrap();
    (libc::WEXITSTATUS(status), err, usage.ru_maxrss)
}

#[test]
fn a_command_that_floods_stderr_fails_with_a_bounded_message_naming_its_log() {
    let pipeline = r#"
[nodes.small]
kind = "command"
run = "echo hi >&2; exit 1"
outputs = ["o"]

[nodes.flood]
kind = "command"
run = "head -c 50000000 /dev/zero | tr '\\0' x >&2; echo >&2; echo last words >&2; exit 1"
outputs = ["o"]
"#;
    let p = Proj::with_pipeline(pipeline);
    let (code, err, small) = peak_rss_kib(&p, &["build", "small"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("hi"), "{err}");
    let (code, err, flood) = peak_rss_kib(&p, &["build", "flood"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.len() < 16 << 10, "{} bytes of message", err.len());
    assert!(err.contains("last words"), "the tail is shown: {err}");
    let log = err
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| "()`',:;".contains(c)))
        .find(|w| w.ends_with("command.log"))
        .unwrap_or_else(|| panic!("no log named: {err}"));
    let bytes = std::fs::metadata(p.dir().join(log)).unwrap().len();
    assert!(bytes > 50_000_000, "the whole output is in the log");
    eprintln!("peak RSS: {small} KiB (a small command), {flood} KiB (50 MB of stderr)");
    assert!(
        flood < small + (20 << 10),
        "50 MB of stderr raised pai's peak RSS from {small} KiB to {flood} KiB"
    );
}

#[test]
fn a_command_sees_exactly_the_files_its_source_selects() {
    let pipeline = r#"
[nodes.src]
kind = "source"
path = "data"
include = ["*.txt"]

[nodes.list]
kind = "command"
inputs = ["src"]
run = "ls $PAI_IN_SRC > $PAI_OUT/ls; cat $PAI_IN_SRC/*.txt > $PAI_OUT/cat; ln $PAI_IN_SRC/a.txt $PAI_OUT/"
outputs = ["ls", "cat", "a.txt"]
"#;
    let p = Proj::with_pipeline(pipeline);
    p.write("data/a.txt", "alpha\n");
    p.write("data/c.txt", "gamma\n");
    p.write("data/b.md", "left out\n");
    p.build(&[]);
    let out = p.path("cache/out/list");
    assert_eq!(
        std::fs::read_to_string(out.join("ls")).unwrap(),
        "a.txt\nc.txt\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("cat")).unwrap(),
        "alpha\ngamma\n"
    );
    // A hard link of a selected file is stored as that file's bytes, in
    // an inode of the store's own.
    assert_eq!(
        std::fs::read_to_string(out.join("a.txt")).unwrap(),
        "alpha\n"
    );
    use std::os::unix::fs::MetadataExt;
    let user = std::fs::metadata(p.path("data/a.txt")).unwrap();
    assert_eq!(user.nlink(), 1);
    assert!(!user.permissions().readonly());
}

#[test]
fn a_command_finds_its_folders_when_the_project_is_named_relative() {
    let pipeline = r#"
[nodes.src]
kind = "source"
path = "data"

[nodes.up]
kind = "command"
inputs = ["src"]
run = "cat $PAI_IN_SRC/a.txt > $PAI_OUT/o"
outputs = ["o"]

[nodes.down]
kind = "command"
inputs = ["up"]
run = "cp $PAI_IN_UP/o $PAI_OUT/o"
outputs = ["o"]
"#;
    let p = Proj::with_pipeline(pipeline);
    p.write("data/a.txt", "alpha\n");
    let name = p.dir().file_name().unwrap();
    let out = std::process::Command::new(BIN)
        .current_dir(p.dir().parent().unwrap())
        .arg("-C")
        .arg(name)
        .arg("build")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(p.read("cache/out/down/o"), "alpha\n");
}
