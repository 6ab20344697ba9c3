//! Every process a test starts, accounted for: the integration tests are threads of one test
//! process, so a child a test forgets (a `gotrace attach` never waited for, the `pprof` server
//! `go tool` started) outlives it silently, for as long as the whole run and beyond. Here each
//! process started through the kit leads its own process group, registered with the test
//! (thread) that started it, and a [`Guard`] held for the test's duration kills what is still
//! alive of those groups at its end and fails the test, naming each leftover.
//!
//! `tests/clippy.toml` forbids `Command::spawn`, `output` and `status` everywhere else in this
//! crate, so no test can start a process the guard does not see.

use std::{
    cell::RefCell,
    fmt, io,
    os::unix::process::CommandExt,
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use rustix::process::{Pid, Signal, WaitOptions};

/// One process group started under a guard: its leader's pid (= the group id) and start time,
/// which tells the leader from a later process that got the same pid.
struct Group {
    pgid: i32,
    leader_start: u64,
}

thread_local! {
    /// The open guards of this thread, innermost last, each with the groups started under it.
    static SCOPES: RefCell<Vec<Vec<Group>>> = const { RefCell::new(Vec::new()) };
}

/// A process still alive at the end of its guard (it has been killed since).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub pid: i32,
    pub command: String,
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} `{}`", self.pid, self.command)
    }
}

/// Held for a test's duration (make it the test's first binding, so that it is dropped last):
/// at the end, what the processes started under it left alive is killed and the test fails.
#[must_use = "the guard checks the test's processes when dropped"]
pub struct Guard {
    depth: usize,
    done: bool,
}

/// Opens a guard on this thread; the processes the kit starts until it is dropped belong to it.
pub fn guard() -> Guard {
    // Grandchildren whose parent dies are re-parented to this process rather than to init, so
    // that they stay in the test's process tree and their exit is reaped here.
    static SUBREAPER: std::sync::Once = std::sync::Once::new();
    SUBREAPER.call_once(|| {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .expect("PR_SET_CHILD_SUBREAPER");
    });
    let depth = SCOPES.with(|s| {
        let mut s = s.borrow_mut();
        s.push(Vec::new());
        s.len()
    });
    Guard { depth, done: false }
}

impl Guard {
    /// Kills what is left alive of the process groups started under this guard and returns it
    /// (empty when the test cleaned up after itself), instead of failing the test.
    pub fn leftovers(mut self) -> Vec<Leftover> {
        self.done = true;
        self.close()
    }

    fn close(&self) -> Vec<Leftover> {
        let groups = SCOPES.with(|s| {
            let mut s = s.borrow_mut();
            assert_eq!(s.len(), self.depth, "children guards dropped out of order");
            s.pop().unwrap_or_default()
        });
        sweep(&groups)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let left = self.close();
        // A test already failing has its own message; its leftovers are killed all the same.
        if !left.is_empty() && !std::thread::panicking() {
            let names: Vec<String> = left.iter().map(Leftover::to_string).collect();
            panic!(
                "the test left {} process(es) running (killed now): {}",
                names.len(),
                names.join(", ")
            );
        }
    }
}

/// Spawns `cmd` as the leader of a new process group registered with this thread's innermost
/// guard. Panics without one: every test that starts processes must hold a guard.
pub fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let open = SCOPES.with(|s| !s.borrow().is_empty());
    assert!(
        open,
        "starting {cmd:?} outside a children guard: make `let _children = gotrace_tests::children::guard();` the test's first line"
    );
    #[allow(clippy::disallowed_methods)] // the one place processes are started
    let child = cmd.process_group(0).spawn()?;
    let pgid = child.id() as i32;
    // The leader cannot have been reaped yet (its `Child` is here), so its start time is its own.
    let leader_start = start_time(pgid).unwrap_or(0);
    SCOPES.with(|s| {
        s.borrow_mut()
            .last_mut()
            .expect("checked above")
            .push(Group { pgid, leader_start })
    });
    Ok(child)
}

/// [`Command::output`] through [`spawn`].
pub fn output(cmd: &mut Command) -> io::Result<Output> {
    spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?
    .wait_with_output()
}

/// [`Command::status`] through [`spawn`].
pub fn status(cmd: &mut Command) -> io::Result<ExitStatus> {
    spawn(cmd)?.wait()
}

/// Kills the whole process group `child` leads (the child and whatever it started), then
/// reaps the child.
pub fn kill_group(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        // While `child` is unreaped its pid, the group id, cannot be reused.
        let _ = rustix::process::kill_process_group(pid(child.id() as i32), Signal::KILL);
        let _ = child.wait();
    }
}

fn pid(raw: i32) -> Pid {
    Pid::from_raw(raw).expect("a pid is positive")
}

fn start_time(pid: i32) -> Option<u64> {
    procfs::process::Process::new(pid)
        .and_then(|p| p.stat())
        .ok()
        .map(|s| s.starttime)
}

/// The live (not zombie) members of `groups`, with whether each is a group leader.
fn members(groups: &[Group]) -> Vec<(Leftover, bool)> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let all: Vec<_> = all
        .filter_map(|p| p.ok())
        .filter_map(|p| Some((p.stat().ok()?, p)))
        .collect();
    let me = rustix::process::getpid().as_raw_pid();
    let parent: std::collections::HashMap<i32, i32> =
        all.iter().map(|(s, _)| (s.pid, s.ppid)).collect();
    // Everything a kit process started is below this process: under its leader, or, orphaned,
    // re-parented here (the subreaper). A process of the same group id elsewhere is not ours.
    let descends_from_me = |mut pid: i32| {
        for _ in 0..parent.len() {
            match parent.get(&pid) {
                Some(&ppid) if ppid == me => return true,
                Some(&ppid) if ppid > 1 => pid = ppid,
                _ => return false,
            }
        }
        false
    };
    // A leader that was reaped and whose pid went to a new process: its group id is someone
    // else's now (pids are reused quickly where pid_max is 32768).
    let reused = |g: &Group| {
        all.iter()
            .any(|(s, _)| s.pid == g.pgid && s.starttime != g.leader_start)
    };
    let ours: Vec<&Group> = groups.iter().filter(|g| !reused(g)).collect();
    all.iter()
        .filter_map(|(stat, p)| {
            let group = ours.iter().find(|g| g.pgid == stat.pgrp)?;
            let leader = stat.pid == group.pgid;
            if !leader && !descends_from_me(stat.pid) {
                return None;
            }
            if matches!(stat.state, 'Z' | 'X') {
                // Dead: an orphan's zombie is this process's (the subreaper's) to reap; a
                // leader's is left alone, its `Child` may still be waited for.
                if !leader && stat.ppid == me {
                    let _ = rustix::process::waitpid(Some(pid(stat.pid)), WaitOptions::empty());
                }
                return None;
            }
            let command = p
                .cmdline()
                .ok()
                .filter(|c| !c.is_empty())
                .map(|c| c.join(" "))
                .unwrap_or_else(|| format!("[{}]", stat.comm));
            Some((
                Leftover {
                    pid: stat.pid,
                    command,
                },
                leader,
            ))
        })
        .collect()
}

/// Kills and reaps what is alive of `groups` (and whatever it starts meanwhile); returns what
/// was.
fn sweep(groups: &[Group]) -> Vec<Leftover> {
    let mut found: Vec<Leftover> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = members(groups);
        if left.is_empty() || Instant::now() > deadline {
            return found;
        }
        for (leftover, leader) in left {
            let _ = rustix::process::kill_process(pid(leftover.pid), Signal::KILL);
            // A leaked leader is this process's child whose `Child` is gone: reap it here.
            if leader {
                let _ = rustix::process::waitpid(Some(pid(leftover.pid)), WaitOptions::empty());
            }
            if !found.iter().any(|f| f.pid == leftover.pid) {
                found.push(leftover);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleep() -> Command {
        let mut c = Command::new("sleep");
        c.arg("600");
        c
    }

    #[test]
    fn a_process_left_running_is_reported_and_killed() {
        let g = guard();
        let child = spawn(&mut sleep()).unwrap();
        let pid = child.id() as i32;
        drop(child); // dropping a `Child` neither kills nor waits
        let left = g.leftovers();
        assert_eq!(
            left,
            [Leftover {
                pid,
                command: "sleep 600".into()
            }]
        );
        assert!(procfs::process::Process::new(pid).is_err(), "still there");
    }

    #[test]
    fn an_orphaned_grandchild_is_reported() {
        let g = guard();
        // `sh` starts a sleep in the background and exits: the sleep is orphaned but stays in
        // the group.
        let status = status(Command::new("sh").args(["-c", "sleep 600 & echo started"])).unwrap();
        assert!(status.success());
        let left = g.leftovers();
        assert_eq!(
            left.iter().map(|l| l.command.as_str()).collect::<Vec<_>>(),
            ["sleep 600"]
        );
    }

    #[test]
    fn a_test_that_cleans_up_has_no_leftover() {
        let g = guard();
        let mut child = spawn(&mut sleep()).unwrap();
        kill_group(&mut child);
        assert!(output(&mut Command::new("true")).unwrap().status.success());
        assert_eq!(g.leftovers(), []);
    }

    #[test]
    fn the_guard_fails_the_test_naming_the_leftover() {
        let panic = std::panic::catch_unwind(|| {
            let _g = guard();
            drop(spawn(&mut sleep()).unwrap());
        })
        .expect_err("the guard did not fail the test");
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("left 1 process(es) running") && message.contains("`sleep 600`"),
            "{message}"
        );
    }

    #[test]
    #[should_panic(expected = "outside a children guard")]
    fn starting_a_process_without_a_guard_is_refused() {
        let _ = spawn(&mut sleep());
    }
}
