//! The traced process: its executable (through `/proc/PID/exe`), where it is mapped, its memory.

pub mod memory;

use std::{io, os::fd::OwnedFd, path::PathBuf};

use procfs::{
    process::{MMPermissions, MMapPath, MemoryMaps, Process},
    FromRead,
};
use rustix::process::{Pid, PidfdFlags};
use serde::{Deserialize, Serialize};

pub use memory::ProcessMemory;

use crate::{
    binary::GoBinary,
    error::{Error, Result},
};

pub struct Target {
    pub pid: u32,
    /// The executable's path as the process sees it (may be inside another mount namespace, or
    /// end in " (deleted)" when the file was replaced after start).
    pub exe: String,
    /// What to open and attach to: `/proc/PID/exe` reaches the very inode the process runs.
    pub exe_handle: PathBuf,
    pub binary: std::sync::Arc<GoBinary>,
    /// Runtime address minus link-time address of the executable's code (non-zero for PIE).
    pub load_bias: u64,
    pub memory: ProcessMemory,
}

/// What report.json says about the target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetInfo {
    pub pid: u32,
    pub exe: String,
    pub go_version: String,
    pub stripped: bool,
    pub pie: bool,
    pub module: Option<String>,
}

impl Target {
    pub fn open(pid: u32) -> Result<Self> {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        if pid == 0 || !proc.exists() {
            return Err(Error::NoSuchProcess { pid });
        }
        let exe_handle = proc.join("exe");
        let exe = match std::fs::read_link(&exe_handle) {
            Ok(p) => p.to_string_lossy().into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(if proc.exists() {
                    Error::NoExecutable { pid }
                } else {
                    Error::NoSuchProcess { pid }
                })
            }
            Err(source) => {
                return Err(Error::ProcAccess {
                    pid,
                    what: "the executable (/proc/PID/exe)",
                    source,
                })
            }
        };
        let binary = shared_binary(&exe_handle, &exe).map_err(|e| match e {
            Error::Open { source, .. } => Error::ProcAccess {
                pid,
                what: "the executable (/proc/PID/exe)",
                source,
            },
            e => e,
        })?;
        let load_bias = if binary.elf.pie {
            load_bias(pid, &binary)?
        } else {
            0
        };
        // The first loaded segment (the ELF header, then code) stays mapped as long as the
        // program runs.
        let witness = binary.elf.segments.first().map_or(0, |s| s.addr) + load_bias;
        let memory = ProcessMemory::open(pid, witness)?;
        Ok(Target {
            pid,
            exe,
            exe_handle,
            binary,
            load_bias,
            memory,
        })
    }

    pub fn info(&self) -> TargetInfo {
        TargetInfo {
            pid: self.pid,
            exe: self.exe.clone(),
            go_version: self.binary.buildinfo.version_string.clone(),
            stripped: self.binary.stripped(),
            pie: self.binary.elf.pie,
            module: self.binary.buildinfo.path.clone(),
        }
    }

    /// A pidfd that becomes readable when the process exits (Linux 5.3+).
    pub fn exit_fd(&self) -> Result<OwnedFd> {
        // A pid that is not a positive pid_t gets the kernel's own answer to it: EINVAL.
        let pid = i32::try_from(self.pid).ok().and_then(Pid::from_raw);
        pid.ok_or(rustix::io::Errno::INVAL)
            .and_then(|pid| rustix::process::pidfd_open(pid, PidfdFlags::empty()))
            .map_err(|errno| {
                if errno == rustix::io::Errno::SRCH {
                    Error::NoSuchProcess { pid: self.pid }
                } else {
                    Error::ProcAccess {
                        pid: self.pid,
                        what: "a pidfd",
                        source: errno.into(),
                    }
                }
            })
    }

    pub fn is_alive(&self) -> bool {
        // A zombie (exited, not yet reaped) still has /proc/PID but no executable mapping.
        i32::try_from(self.pid)
            .ok()
            .and_then(|pid| Process::new(pid).ok()?.stat().ok())
            .is_some_and(|stat| stat.state != 'Z' && stat.state != 'X')
    }
}

/// An executable's identity: device, inode, modification time and size.
type FileKey = (u64, u64, i64, i64, u64);

fn file_key(path: &std::path::Path) -> Option<FileKey> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
}

/// The executable `/proc/PID/exe` reaches, parsed once for every process that runs it: the
/// agent watches many processes of one binary, which then share one map of it and one parse.
/// Entries are weak, so a binary goes with the last target running it. The key is read before
/// and after parsing: a process that exec'd meanwhile does not get another file's entry.
fn shared_binary(exe_handle: &std::path::Path, display: &str) -> Result<std::sync::Arc<GoBinary>> {
    use std::sync::{Arc, Mutex, Weak};
    static PARSED: Mutex<Vec<(FileKey, Weak<GoBinary>)>> = Mutex::new(Vec::new());
    let key = file_key(exe_handle);
    let mut parsed = PARSED.lock().unwrap_or_else(|p| p.into_inner());
    parsed.retain(|(_, b)| b.strong_count() > 0);
    if let Some(b) = key.and_then(|k| parsed.iter().find(|(c, _)| *c == k)?.1.upgrade()) {
        return Ok(b);
    }
    let binary = Arc::new(GoBinary::open(exe_handle, display)?);
    if let Some(k) = key.filter(|k| file_key(exe_handle) == Some(*k)) {
        parsed.push((k, Arc::downgrade(&binary)));
    }
    Ok(binary)
}

/// One mapping of a process's address space: a line of `/proc/PID/maps`.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub executable: bool,
    /// Offset in the mapped file of the byte at `start`.
    pub offset: u64,
    pub inode: u64,
    /// What is mapped, as the process sees it: a file's path (without the " (deleted)" the
    /// kernel appends once the file was removed) or a pseudo-path such as `[vdso]`; `None` for
    /// anonymous memory.
    pub path: Option<String>,
}

/// The mappings of process `pid`, from `/proc/PID/maps` (parsed by the procfs crate).
pub fn mappings(pid: u32) -> Result<Vec<Mapping>> {
    let access = |source| Error::ProcAccess {
        pid,
        what: "the memory map (/proc/PID/maps)",
        source,
    };
    // Read here rather than through procfs::process::Process::maps, which folds the OS error
    // into its own kinds: the error says exactly what the kernel said.
    let text = std::fs::read(format!("/proc/{pid}/maps")).map_err(access)?;
    let maps = MemoryMaps::from_read(&text[..])
        .map_err(|e| access(io::Error::new(io::ErrorKind::InvalidData, e.to_string())))?;
    Ok(maps
        .into_iter()
        .map(|m| Mapping {
            start: m.address.0,
            end: m.address.1,
            executable: m.perms.contains(MMPermissions::EXECUTE),
            offset: m.offset,
            inode: m.inode,
            path: map_path(m.pathname),
        })
        .collect())
}

/// The path column of a maps line, as the kernel wrote it (less " (deleted)").
fn map_path(path: MMapPath) -> Option<String> {
    Some(match path {
        MMapPath::Path(p) => {
            let p = p.to_string_lossy();
            p.strip_suffix(" (deleted)").unwrap_or(&p).to_string()
        }
        MMapPath::Heap => "[heap]".into(),
        MMapPath::Stack => "[stack]".into(),
        MMapPath::TStack(tid) => format!("[stack:{tid}]"),
        MMapPath::Vdso => "[vdso]".into(),
        MMapPath::Vvar => "[vvar]".into(),
        MMapPath::Vsyscall => "[vsyscall]".into(),
        MMapPath::Rollup => "[rollup]".into(),
        MMapPath::Vsys(key) => format!("/SYSV{:08x}", key as u32),
        MMapPath::Other(name) => format!("[{name}]"),
        MMapPath::Anonymous => return None,
    })
}

/// For a PIE, where the kernel placed the executable: the start of its first file-backed
/// mapping minus the first PT_LOAD's page-aligned link address.
fn load_bias(pid: u32, binary: &GoBinary) -> Result<u64> {
    let maps = mappings(pid)?;
    let exe_ino = std::fs::metadata(format!("/proc/{pid}/exe"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .ok();
    let first_load = binary
        .elf
        .segments
        .iter()
        .filter(|s| s.file_size > 0)
        .map(|s| (s.addr, s.file_offset))
        .min()
        .unwrap_or((0, 0));
    for m in &maps {
        if exe_ino.is_some_and(|ino| m.inode != ino) {
            continue;
        }
        if m.offset == first_load.1 & !0xfff {
            return Ok(m.start.wrapping_sub(first_load.0 & !0xfff));
        }
    }
    Err(Error::Other(format!(
        "cannot find where {} is mapped in process {pid} (/proc/{pid}/maps)",
        binary.path
    )))
}
