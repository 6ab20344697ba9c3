//! Reading the target's memory without stopping it (`process_vm_readv`; needs CAP_SYS_PTRACE
//! or the same uid under the ptrace access rules), and the rare writes into it.
//!
//! Writes go through `/proc/PID/mem` opened when gotrace attached, never by pid: that file
//! holds the address space it was opened on, and once the process `exec`s (same pid, same start
//! time, a new program) it reads and writes nothing. So a variable's address learnt from the
//! old program can never be written into the new one, and the same file tells whether the
//! program is still the one gotrace attached to. Opening it takes more than ptrace access to
//! another user's process (the file is 0600, its owner's: CAP_DAC_OVERRIDE on top of
//! CAP_SYS_PTRACE); without it, gotrace writes by pid with `process_vm_writev`, each write
//! preceded by a check that the program is still the one attached to (its executable and where
//! its stack began, which an exec moves), leaving a window of one system call.

use std::{
    fs::File,
    io::{self, IoSlice, IoSliceMut},
    os::unix::fs::{FileExt, MetadataExt},
    sync::Arc,
};

use nix::{
    sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec},
    unistd::Pid,
};

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct ProcessMemory {
    pid: u32,
    program: Program,
}

/// How the program gotrace attached to is told from one the process exec'd since.
#[derive(Clone, Debug)]
enum Program {
    /// `/proc/PID/mem` as opened at attach, and an address mapped for the program's whole life
    /// (its first loaded segment), read to tell whether the program is still there.
    Mem { file: Arc<File>, witness: u64 },
    /// The program's executable (device, inode) and where its stack began.
    Image((u64, u64, u64)),
}

/// The executable and the stack start of what `pid` runs now.
fn image_of(pid: u32) -> Option<(u64, u64, u64)> {
    let stack = procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .ok()?
        .startstack;
    let exe = std::fs::metadata(format!("/proc/{pid}/exe")).ok()?;
    Some((exe.dev(), exe.ino(), stack))
}

impl ProcessMemory {
    /// Opens the address space the process has now; `witness` is an address mapped in it for
    /// the program's whole life.
    pub fn open(pid: u32, witness: u64) -> Result<Self> {
        let program = match File::options()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/mem"))
        {
            Ok(file) => Program::Mem {
                file: Arc::new(file),
                witness,
            },
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                Program::Image(image_of(pid).ok_or(Error::ProcAccess {
                    pid,
                    what: "its executable and stat (/proc/PID/exe, /proc/PID/stat)",
                    source: e,
                })?)
            }
            Err(source) => {
                return Err(Error::ProcAccess {
                    pid,
                    what: "its memory (/proc/PID/mem)",
                    source,
                })
            }
        };
        Ok(ProcessMemory { pid, program })
    }

    /// Whether the program gotrace attached to still owns this address space: false once the
    /// process has exec'd another program (or exited).
    pub fn same_program(&self) -> bool {
        match &self.program {
            Program::Mem { file, witness } => {
                let mut b = [0u8; 1];
                matches!(file.read_at(&mut b, *witness), Ok(1))
            }
            Program::Image(image) => image_of(self.pid).as_ref() == Some(image),
        }
    }

    fn nix_pid(&self) -> Pid {
        Pid::from_raw(self.pid as i32)
    }

    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        let remote = [RemoteIoVec {
            base: addr as usize,
            len: buf.len(),
        }];
        let len = buf.len();
        let n = process_vm_readv(self.nix_pid(), &mut [IoSliceMut::new(buf)], &remote).map_err(
            |errno| Error::Memory {
                pid: self.pid,
                addr,
                source: errno.into(),
            },
        )?;
        if n != len {
            return Err(Error::Memory {
                pid: self.pid,
                addr,
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "short read"),
            });
        }
        Ok(())
    }

    /// Writes into the program gotrace attached to, and only into it (a process that has
    /// exec'd since gets nothing: `Error::Replaced`): only for the documented cases where
    /// gotrace changes a runtime setting, such as turning Go's heap sampler on.
    pub fn write(&self, addr: u64, bytes: &[u8]) -> Result<()> {
        let written = match &self.program {
            Program::Mem { file, .. } => file.write_at(bytes, addr),
            Program::Image(_) if !self.same_program() => Ok(0),
            Program::Image(_) => process_vm_writev(
                self.nix_pid(),
                &[IoSlice::new(bytes)],
                &[RemoteIoVec {
                    base: addr as usize,
                    len: bytes.len(),
                }],
            )
            .map_err(io::Error::from),
        };
        match written {
            Ok(n) if n == bytes.len() => Ok(()),
            // Nothing written: the address space is gone (exec, or exit).
            Ok(0) if !self.same_program() => Err(Error::Replaced { pid: self.pid }),
            Ok(_) => Err(Error::Memory {
                pid: self.pid,
                addr,
                source: io::Error::new(io::ErrorKind::WriteZero, "short write"),
            }),
            Err(source) => Err(Error::Memory {
                pid: self.pid,
                addr,
                source,
            }),
        }
    }

    pub fn read_u64(&self, addr: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    pub fn read_u32(&self, addr: u64) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads `len` bytes at each address, up to 1024 regions per system call (IOV_MAX): one
    /// call for a thousand goroutines instead of a thousand calls.
    pub fn read_many(&self, addrs: &[u64], len: usize) -> Result<Vec<Vec<u8>>> {
        const IOV_MAX: usize = 1024;
        let mut out = vec![vec![0u8; len]; addrs.len()];
        for (chunk_addrs, chunk_out) in addrs.chunks(IOV_MAX).zip(out.chunks_mut(IOV_MAX)) {
            let remote: Vec<RemoteIoVec> = chunk_addrs
                .iter()
                .map(|&a| RemoteIoVec {
                    base: a as usize,
                    len,
                })
                .collect();
            let n = {
                let mut local: Vec<IoSliceMut> =
                    chunk_out.iter_mut().map(|b| IoSliceMut::new(b)).collect();
                process_vm_readv(self.nix_pid(), &mut local, &remote)
            };
            if n.ok() != Some(len * chunk_addrs.len()) {
                // A region that faults ends the batch early: read one by one to say which.
                for (a, b) in chunk_addrs.iter().zip(chunk_out.iter_mut()) {
                    self.read(*a, b)?;
                }
            }
        }
        Ok(out)
    }

    pub fn read_vec(&self, addr: u64, len: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.read(addr, &mut v)?;
        Ok(v)
    }
}
