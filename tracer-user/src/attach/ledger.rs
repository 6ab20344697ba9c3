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
//! describe), a directory only root may write: it is created 0700 and refused when it is a
//! symlink, not a directory, not root's own or writable by others. Sessions in other mount
//! namespaces see each other only when they share `/run`.

use std::{
    fs::{self, File},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};

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
    dir: PathBuf,
    _lock: File,
}

impl Ledger {
    pub fn lock() -> io::Result<Ledger> {
        let dir = PathBuf::from(DIR);
        for d in [dir.parent().expect("a parent"), &dir] {
            match fs::DirBuilder::new().mode(0o700).create(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            trusted_dir(d)?;
        }
        let lock = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(dir.join("lock"))?;
        flock(&lock, FlockOperation::LockExclusive)?;
        let ledger = Ledger { dir, _lock: lock };
        ledger.forget_exited();
        Ok(ledger)
    }

    fn path(&self, program: ProcessId) -> PathBuf {
        self.dir
            .join(format!("{}-{}.json", program.pid, program.start))
    }

    /// The record of `program` running `image`, if a session left one (an unreadable one
    /// counts as none).
    pub fn read(&self, program: ProcessId, image: u64) -> Option<Record> {
        let bytes = fs::read(self.path(program)).ok()?;
        serde_json::from_slice::<Record>(&bytes)
            .ok()
            .filter(|r| r.program == program && r.image == image)
    }

    pub fn write(&self, record: &Record) -> io::Result<()> {
        let path = self.path(record.program);
        let tmp = path.with_extension("tmp");
        // Only root writes here (checked in `lock`) and only under the lock: a fixed name is
        // safe; a leftover of a session killed mid-write is replaced.
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec(record).map_err(io::Error::other)?)?;
        fs::rename(&tmp, &path)
    }

    pub fn remove(&self, program: ProcessId) {
        let _ = fs::remove_file(self.path(program));
    }

    /// Drops the records of programs that have exited: nobody can attach to them again.
    fn forget_exited(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some((pid, start)) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.split_once('-'))
            else {
                continue;
            };
            if let (Ok(pid), Ok(start)) = (pid.parse(), start.parse()) {
                if !(ProcessId { pid, start }).alive() {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
}

/// A directory that only root can change: not a symlink, root's own, writable by nobody else.
fn trusted_dir(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    let untrusted = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} {why}: remove it", dir.display()),
        ))
    };
    if !meta.is_dir() {
        return untrusted("is not a directory");
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return untrusted("belongs to another user");
    }
    if meta.mode() & 0o022 != 0 {
        return untrusted("is writable by others");
    }
    Ok(())
}
