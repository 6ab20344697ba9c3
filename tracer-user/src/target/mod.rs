//! The traced process: its executable (through `/proc/PID/exe`), where it is mapped, its memory.

pub mod memory;

use std::{
    io,
    os::fd::{FromRawFd, OwnedFd},
    path::PathBuf,
};

use serde::Serialize;

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
#[derive(Clone, Debug, Serialize)]
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
        let binary = GoBinary::open(&exe_handle, &exe).map_err(|e| match e {
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
        Ok(Target {
            pid,
            exe,
            exe_handle,
            binary: binary.into(),
            load_bias,
            memory: ProcessMemory::new(pid),
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
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid as libc::c_int, 0) };
        if fd < 0 {
            let source = io::Error::last_os_error();
            return Err(if source.raw_os_error() == Some(libc::ESRCH) {
                Error::NoSuchProcess { pid: self.pid }
            } else {
                Error::ProcAccess {
                    pid: self.pid,
                    what: "a pidfd",
                    source,
                }
            });
        }
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    pub fn is_alive(&self) -> bool {
        // A zombie (exited, not yet reaped) still has /proc/PID but no executable mapping.
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')').and_then(|(_, rest)| {
                    rest.split_whitespace()
                        .next()
                        .map(|st| st != "Z" && st != "X")
                })
            })
            .unwrap_or(false)
    }
}

/// For a PIE, where the kernel placed the executable: the start of its first file-backed
/// mapping minus the first PT_LOAD's page-aligned link address.
fn load_bias(pid: u32, binary: &GoBinary) -> Result<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|source| {
        Error::ProcAccess {
            pid,
            what: "the memory map (/proc/PID/maps)",
            source,
        }
    })?;
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
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(_perms), Some(offset), Some(_dev), Some(inode)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            continue;
        };
        if exe_ino.is_some_and(|ino| inode.parse::<u64>().ok() != Some(ino)) {
            continue;
        }
        let start = u64::from_str_radix(range.split('-').next().unwrap_or(""), 16).unwrap_or(0);
        let offset = u64::from_str_radix(offset, 16).unwrap_or(u64::MAX);
        if offset == first_load.1 & !0xfff {
            return Ok(start.wrapping_sub(first_load.0 & !0xfff));
        }
    }
    Err(Error::Other(format!(
        "cannot find where {} is mapped in process {pid} (/proc/{pid}/maps)",
        binary.path
    )))
}
