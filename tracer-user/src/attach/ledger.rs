//! The host-wide record of what gotrace sessions wrote into Go programs' heap samplers, so
//! that sessions see each other: `runtime.MemProfileRate` is one variable per program, and
//! two sessions that each saved "the program's own" value would save each other's (a second
//! session taking the first one's 512 KiB as the original; the first leaving and turning
//! sampling off under the second). One record per traced program, under a lock, says what the
//! program had before any session touched it, what gotrace wrote last and who is attached; the
//! last one out restores. A session killed with SIGKILL leaves its record behind, which is how
//! the next session knows that the rate it finds was gotrace's, not the program's.
//!
//! The records live in `/run/gotrace/sampler` (tmpfs: gone at reboot, with every program they
//! describe), opened like every output directory (`files::OutDir`): refused when
//! another user than root (or the one who ran sudo) owns it or others can write to it, never
//! reached through a planted symlink. Sessions in other mount namespaces see each other only
//! when they share `/run`.

use std::{
    ffi::{OsStr, OsString},
    fs::File,
    io,
    path::Path,
};

use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    files::OutDir,
};

const DIR: &str = "/run/gotrace/sampler";

/// One process, as a (pid, start time) pair: pids are reused, start times (clock ticks since
/// boot) tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcessId {
    pub pid: u32,
    pub start: u64,
}

impl ProcessId {
    pub fn of(pid: u32) -> io::Result<ProcessId> {
        Ok(ProcessId::with_image(pid)?.0)
    }

    /// The process, and where its program's stack began (see `Record::image`).
    pub fn with_image(pid: u32) -> io::Result<(ProcessId, u64)> {
        let stat = procfs::process::Process::new(pid as i32)
            .and_then(|p| p.stat())
            .map_err(io::Error::other)?;
        Ok((
            ProcessId {
                pid,
                start: stat.starttime,
            },
            stat.startstack,
        ))
    }

    pub fn myself() -> io::Result<ProcessId> {
        ProcessId::of(std::process::id())
    }

    fn alive(&self) -> bool {
        ProcessId::of(self.pid).is_ok_and(|now| now == *self)
    }
}

/// A session attached to the program, and the rate it asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Holder {
    /// The gotrace process the session runs in.
    pub process: ProcessId,
    /// Which of that process's sessions (a library user, or the agent, may run several).
    pub session: u64,
    pub rate: u64,
}

impl Holder {
    /// A new session of this process.
    pub fn new(process: ProcessId, rate: u64) -> Holder {
        static SESSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Holder {
            process,
            session: SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            rate,
        }
    }
}

/// What gotrace did to one program's sampler.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub program: ProcessId,
    /// Where the program's stack began (`/proc/PID/stat` startstack): an `exec` keeps the pid
    /// and the start time but maps a new, randomly placed stack, so a record of the program
    /// before an exec does not describe the one after.
    pub image: u64,
    /// The program's own `MemProfileRate`, before any session wrote into it.
    pub original: u64,
    /// What gotrace wrote last. A target now holding anything else has set its own rate since,
    /// and the record no longer describes it.
    pub written: u64,
    /// Sessions attached now (or killed without leaving: see `live_holders`).
    pub holders: Vec<Holder>,
}

impl Record {
    /// The holders that still run (a session killed with SIGKILL never took itself out).
    pub fn live_holders(&mut self) -> &mut Vec<Holder> {
        self.holders.retain(|h| h.process.alive());
        &mut self.holders
    }
}

/// The records, locked for as long as this value lives (an exclusive `flock`: sessions take
/// it for a read-modify-write of a few hundred bytes).
pub(crate) struct Ledger {
    dir: OutDir,
    _lock: File,
}

impl Ledger {
    pub fn lock() -> Result<Ledger> {
        // Opened and written as every output is (`files`): checked on its descriptor,
        // never through a symlink, records replaced whole.
        let dir = OutDir::open(Path::new(DIR))?;
        let lock = dir.open_file(OsStr::new("lock"))?;
        flock(&lock, FlockOperation::LockExclusive).map_err(|e| Error::Output {
            path: dir.path().join("lock"),
            source: e.into(),
        })?;
        let ledger = Ledger { dir, _lock: lock };
        ledger.forget_exited();
        Ok(ledger)
    }

    fn name(program: ProcessId) -> OsString {
        format!("{}-{}.json", program.pid, program.start).into()
    }

    /// The record of `program` running `image`, if a session left one (an unreadable one
    /// counts as none).
    pub fn read(&self, program: ProcessId, image: u64) -> Option<Record> {
        let bytes = self.dir.read(&Self::name(program)).ok()?;
        serde_json::from_slice::<Record>(&bytes)
            .ok()
            .filter(|r| r.program == program && r.image == image)
    }

    pub fn write(&self, record: &Record) -> Result<()> {
        let bytes = serde_json::to_vec(record).map_err(|e| Error::Other(e.to_string()))?;
        self.dir.write(&Self::name(record.program), &bytes)
    }

    pub fn remove(&self, program: ProcessId) {
        self.dir.remove(&Self::name(program));
    }

    /// Drops the records of programs that have exited: nobody can attach to them again.
    fn forget_exited(&self) {
        for name in self.dir.names().unwrap_or_default() {
            let Some((pid, start)) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.split_once('-'))
            else {
                continue;
            };
            if let (Ok(pid), Ok(start)) = (pid.parse(), start.parse()) {
                if !(ProcessId { pid, start }).alive() {
                    self.dir.remove(&name);
                }
            }
        }
    }
}
