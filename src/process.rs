//! The processes a build starts: each `command` runs in a process group of
//! its own, registered while it runs, so that
//!
//! - when its shell exits, whatever it left running in its group ends too
//!   (a background child cannot keep writing an output after the command);
//! - when pai is stopped (SIGINT, SIGTERM), every running group gets SIGTERM,
//!   then SIGKILL after a short grace, before pai exits with 128 + the signal;
//! - when pai itself was killed (SIGKILL, a crash), the next build finds the
//!   groups its commands left running through the file each command's folder
//!   holds (written by the command's own process before it runs), and ends
//!   them before it clears those folders.
//!
//! In-process nodes (training on the GPU) simply stop with the process, as
//! after any kill: their work folders keep their checkpoints.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long a stopped group has to end on SIGTERM before it gets SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);

/// The file in a command's folder naming its process group.
const GROUP_FILE: &str = "group";

struct Registry {
    stopping: bool,
    groups: BTreeSet<i32>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    stopping: false,
    groups: BTreeSet::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether pai is stopping on a signal.
pub fn stopping() -> bool {
    registry().stopping
}

/// A command running as the leader of its own process group.
pub struct Group {
    child: Child,
    pgid: i32,
    reaped: bool,
}

/// Starts `cmd` in a new process group and registers the group, so that a
/// stop ends it. Refused once pai is stopping.
///
/// Before the command runs, its process writes the group file of `dir` (the
/// folder it runs in): its group and `out`, its `$PAI_OUT`. Written by the
/// child itself, the file exists before the command can do anything, so a
/// pai killed at any moment leaves a command the next build can find.
pub fn spawn(cmd: &mut Command, dir: &Path, out: &Path) -> Result<Group> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.join(GROUP_FILE).as_os_str().as_bytes())
        .context("a NUL byte in the command's folder name")?;
    let mut rest = b"\n".to_vec();
    rest.extend_from_slice(out.as_os_str().as_bytes());
    rest.push(b'\n');
    cmd.process_group(0);
    // SAFETY: between fork and exec the closure makes only async-signal-safe
    // system calls (getpid, open, write, close) on memory prepared before
    // the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let mut digits = [0u8; 12];
            let mut n = libc::getpid() as u32;
            let mut i = digits.len();
            loop {
                i -= 1;
                digits[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            let fd = libc::open(
                path.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644,
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let ok = write_all(fd, &digits[i..]) && write_all(fd, &rest);
            libc::close(fd);
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut reg = registry();
    if reg.stopping {
        bail!("pai is stopping on a signal: the command was not started");
    }
    let child = cmd.spawn().context("starting `sh`")?;
    let pgid = child.id() as i32;
    reg.groups.insert(pgid);
    Ok(Group {
        child,
        pgid,
        reaped: false,
    })
}

/// `write(2)` until all of `bytes` is written; async-signal-safe.
fn write_all(fd: i32, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is valid for its length.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            return false;
        }
        bytes = &bytes[n as usize..];
    }
    true
}

impl Group {
    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    /// Waits for the command's shell to exit, then ends the rest of its group.
    /// If pai is stopping, the group is left to the stop's grace, and this
    /// never returns: the process exits from the signal thread.
    pub fn wait(mut self) -> Result<ExitStatus> {
        // The shell is not reaped yet: while it is a zombie its id cannot be
        // taken by another process, so the group's id names this group only.
        wait_exited(self.pgid).context("waiting for the command")?;
        if stopping() {
            self.child.wait().ok();
            self.reaped = true;
            hold();
        }
        kill_group(self.pgid, libc::SIGKILL);
        let status = self.child.wait().context("waiting for the command")?;
        self.reaped = true;
        registry().groups.remove(&self.pgid);
        if stopping() {
            hold();
        }
        Ok(status)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.reaped {
            kill_group(self.pgid, libc::SIGKILL);
            self.child.wait().ok();
            registry().groups.remove(&self.pgid);
        }
    }
}

/// Blocks until the child `pid` has exited, leaving it unreaped.
fn wait_exited(pid: i32) -> std::io::Result<()> {
    loop {
        // SAFETY: waitid writes a siginfo_t into `info`, which outlives the call.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn kill_group(pgid: i32, sig: i32) {
    // SAFETY: plain system call; a group that is gone gives ESRCH.
    unsafe { libc::killpg(pgid, sig) };
}

/// Never returns: the signal thread is about to end the process.
fn hold() -> ! {
    loop {
        std::thread::park();
    }
}

/// Whether any process of group `pgid` still runs (zombies have ended).
fn group_alive(pgid: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        !members(pgid, |_| true).is_empty()
    }
    #[cfg(not(target_os = "linux"))]
    {
        // SAFETY: signal 0 only checks that the group exists.
        unsafe { libc::killpg(pgid, 0) == 0 }
    }
}

/// The live (not zombie) processes of group `pgid` that `keep` accepts.
#[cfg(target_os = "linux")]
fn members(pgid: i32, keep: impl Fn(i32) -> bool) -> Vec<i32> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command name in parentheses: state, ppid, pgrp, …
        let mut rest = stat
            .rsplit_once(')')
            .map(|r| r.1)
            .unwrap_or("")
            .split_whitespace();
        let state = rest.next().unwrap_or("Z");
        let pgrp = rest.nth(1).and_then(|s| s.parse::<i32>().ok());
        if pgrp == Some(pgid) && !matches!(state, "Z" | "X" | "x") && keep(pid) {
            v.push(pid);
        }
    }
    v
}

/// SIGTERM to each group, then SIGKILL to those left after the grace (or at
/// once when `hurry` says so); returns once every group has ended or a
/// second after the SIGKILL.
fn end_groups(groups: &[i32], hurry: &mut dyn FnMut() -> bool) {
    for &g in groups {
        kill_group(g, libc::SIGTERM);
    }
    let start = Instant::now();
    let mut killed: Option<Instant> = None;
    loop {
        let left: Vec<i32> = groups.iter().copied().filter(|&g| group_alive(g)).collect();
        if left.is_empty() {
            return;
        }
        match killed {
            None if start.elapsed() >= GRACE || hurry() => {
                for &g in &left {
                    kill_group(g, libc::SIGKILL);
                }
                killed = Some(Instant::now());
            }
            Some(t) if t.elapsed() > Duration::from_secs(1) => return,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Installs pai's handler of SIGINT and SIGTERM for a build: it ends every
/// running command's group (see [`end_groups`]), says so in one line and
/// exits with 130 (SIGINT) or 143 (SIGTERM). A second signal skips the grace.
///
/// The handler runs on a thread of its own (`signal-hook`'s self-pipe), so it
/// may lock, print and sleep; it leaves with `_exit`, without running exit
/// handlers that could trip over threads still running (the GPU driver's),
/// like any kill: the store is valid after a kill at any moment.
pub fn stop_commands_on_signals() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing the handler of SIGINT and SIGTERM")?;
    std::thread::Builder::new()
        .name("pai-signals".into())
        .spawn(move || {
            let Some(sig) = signals.forever().next() else {
                return;
            };
            let groups: Vec<i32> = {
                let mut reg = registry();
                reg.stopping = true;
                reg.groups.iter().copied().collect()
            };
            end_groups(&groups, &mut || signals.pending().next().is_some());
            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
            let ended = match groups.len() {
                0 => "no command was running".to_string(),
                1 => "ended its running command".to_string(),
                n => format!("ended its {n} running commands"),
            };
            eprintln!(
                "pai: stopped by {name}; {ended}; nodes that finished are kept, `pai build` runs the rest"
            );
            // SAFETY: ends the process at once, as a kill would.
            unsafe { libc::_exit(128 + sig) }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// Never returns while pai is stopping on a signal: the build's thread waits
/// there for the signal thread to end the process with the signal's code.
pub fn hold_if_stopping() {
    if stopping() {
        hold();
    }
}

/// Ends the commands that earlier, killed pai runs left running in folders
/// under `tmp` (their group file names them), telling `notify` about each,
/// so their folders can be removed. A group is ended only if one of its
/// processes still has that folder's `$PAI_OUT`: a process id that has been
/// reused by something else is left alone.
pub fn end_orphans(tmp: &Path, notify: &dyn Fn(&str)) {
    let Ok(rd) = std::fs::read_dir(tmp) else {
        return;
    };
    let mut groups = Vec::new();
    for e in rd.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Some((pgid, out)) = read_group(&e.path()) else {
            continue;
        };
        if orphan_of(pgid, &out) {
            notify(&format!(
                "ending process group {pgid}: a command of an earlier pai run that was killed, \
                 still running in {}",
                e.path().display()
            ));
            groups.push(pgid);
        }
    }
    if !groups.is_empty() {
        end_groups(&groups, &mut || false);
    }
}

fn read_group(dir: &Path) -> Option<(i32, PathBuf)> {
    let text = std::fs::read_to_string(dir.join(GROUP_FILE)).ok()?;
    let mut lines = text.lines();
    let pgid = lines
        .next()?
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|&p| p > 1)?;
    Some((pgid, PathBuf::from(lines.next()?)))
}

/// Whether a live process of group `pgid` was started with `PAI_OUT=out`.
#[cfg(target_os = "linux")]
fn orphan_of(pgid: i32, out: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let mut needle = b"PAI_OUT=".to_vec();
    needle.extend_from_slice(out.as_os_str().as_bytes());
    needle.push(0);
    !members(pgid, |pid| {
        std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
            env.starts_with(&needle[..])
                || env
                    .windows(needle.len() + 1)
                    .any(|w| w[0] == 0 && w[1..] == needle[..])
        })
    })
    .is_empty()
}

/// Without /proc a group cannot be told from a reused id: nothing is ended.
#[cfg(not(target_os = "linux"))]
fn orphan_of(_pgid: i32, _out: &Path) -> bool {
    false
}
