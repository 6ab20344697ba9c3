//! `gotrace check`: the CI gate. After a traced run (of a smoke test, a `go test` binary, a
//! staging service), decide pass or fail from the findings and thresholds, with a reason a
//! person can act on.

use std::{
    collections::HashMap,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{snapshot::Report, units::human_bytes};

/// What makes a run fail.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    /// Patterns that fail the run when found (`goroutine-leak`, `heap-growth`, ...); `None`
    /// means every pattern.
    pub fail_on: Option<Vec<String>>,
    /// Most bytes of heap in use (as the runtime counts it, `HeapInuse`) allowed at any look.
    pub max_inuse: Option<u64>,
    /// Most goroutines (as `runtime.NumGoroutine` counts them) allowed at any look.
    pub max_goroutines: Option<u64>,
}

/// The gate's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub passed: bool,
    /// One line per reason to fail.
    pub reasons: Vec<String>,
}

impl Gate {
    /// Judges a finished session's report, given the peaks the session saw.
    pub fn judge(
        &self,
        report: &Report,
        peak_inuse: Option<u64>,
        peak_goroutines: Option<u64>,
    ) -> Verdict {
        let mut reasons = Vec::new();
        for f in &report.findings {
            let listed = match &self.fail_on {
                None => true,
                Some(list) => list.iter().any(|p| p == f.pattern),
            };
            if listed {
                reasons.push(format!("{} at {}: {}", f.pattern, f.site, f.hint));
            }
        }
        if let (Some(max), Some(peak)) = (self.max_inuse, peak_inuse) {
            if peak > max {
                reasons.push(format!(
                    "heap in use reached {} (limit {})",
                    human_bytes(peak),
                    human_bytes(max)
                ));
            }
        }
        if let (Some(max), Some(peak)) = (self.max_goroutines, peak_goroutines) {
            if peak > max {
                reasons.push(format!("{peak} goroutines at the peak (limit {max})"));
            }
        }
        Verdict {
            passed: reasons.is_empty(),
            reasons,
        }
    }
}

/// How long a Go program gotrace found may take to start its runtime before the reason it
/// cannot be traced (an unsupported release, say) is the answer.
const RUNTIME_START: Duration = Duration::from_secs(10);

/// Waits until `command` — a process gotrace has just started — or one of its descendants (the
/// command may be a wrapper script) runs a Go program whose runtime has started (its main
/// goroutine exists), and returns that program's pid. `None` when the command exited first,
/// or `until` came. Attaching earlier would race with the runtime's own start-up (which, for
/// one, resets `MemProfileRate`).
pub fn wait_for_go_program(command: u32, until: Option<Instant>) -> crate::Result<Option<u32>> {
    // The executable each process was found running that is not Go (until it execs another).
    let mut not_go: HashMap<u32, PathBuf> = HashMap::new();
    // When each Go program was first seen.
    let mut go: HashMap<u32, Instant> = HashMap::new();
    while !exited(command) && until.is_none_or(|t| Instant::now() < t) {
        for pid in family(command) {
            let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
                continue;
            };
            if not_go.get(&pid) == Some(&exe) {
                continue;
            }
            let pending = match runtime_started(pid) {
                Ok(true) => return Ok(Some(pid)),
                Ok(false) => crate::Error::Other(format!(
                    "process {pid} did not start its Go runtime within {RUNTIME_START:?}"
                )),
                Err(
                    crate::Error::NotGo { .. }
                    | crate::Error::NoExecutable { .. }
                    | crate::Error::NoSuchProcess { .. },
                ) => {
                    not_go.insert(pid, exe);
                    continue;
                }
                Err(e) => e,
            };
            if go.entry(pid).or_insert_with(Instant::now).elapsed() > RUNTIME_START {
                return Err(pending);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(None)
}

/// Whether `pid` runs a Go program whose main goroutine exists.
fn runtime_started(pid: u32) -> crate::Result<bool> {
    use crate::{
        goruntime::{allgs::AllGs, Runtime},
        target::Target,
    };
    let t = Target::open(pid)?;
    let rt = Runtime::for_process(&t)?;
    let gs =
        AllGs::new(&t, &rt).ok_or_else(|| crate::Error::Other("runtime.allgs not found".into()))?;
    Ok(gs.snapshot(&t)?.iter().any(|g| g.is_live()))
}

/// Gone, or a zombie nobody has reaped yet.
fn exited(pid: u32) -> bool {
    let stat = procfs::process::Process::new(pid as i32).and_then(|p| p.stat());
    !matches!(stat, Ok(s) if s.state != 'Z')
}

/// `pid` and its descendants, parents before children.
fn family(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while let Some(&p) = all.get(i) {
        i += 1;
        let Ok(tasks) = procfs::process::Process::new(p as i32).and_then(|p| p.tasks()) else {
            continue;
        };
        for task in tasks.flatten() {
            all.extend(task.children().unwrap_or_default());
        }
    }
    all
}

/// Starts the command to check. Started through sudo, gotrace runs it as the user who ran sudo
/// (`SUDO_UID`, `SUDO_GID`, no supplementary groups: std drops them when it changes the uid),
/// not as root, unless `as_root`.
pub fn spawn(program: &str, args: &[String], as_root: bool) -> crate::Result<Child> {
    let mut command = Command::new(program);
    command.args(args);
    if let Some((uid, gid)) = crate::util::sudo_user().filter(|_| !as_root) {
        command.uid(uid).gid(gid);
    }
    command
        .spawn()
        .map_err(|e| crate::Error::Other(format!("cannot start {program}: {e}")))
}

/// Kills `pid` and its descendants: a wrapper and the Go program it started.
pub fn kill_family(pid: u32) {
    use rustix::process::{kill_process, Pid, Signal};
    for p in family(pid).into_iter().rev() {
        if let Some(p) = Pid::from_raw(p as i32) {
            let _ = kill_process(p, Signal::KILL);
        }
    }
}
