//! Reading the target's memory without stopping it (`process_vm_readv`; needs CAP_SYS_PTRACE
//! or the same uid under the ptrace access rules), and the rare writes into it.
//!
//! Writes go through `/proc/PID/mem` opened when gotrace attached, never by pid: that file
//! holds the address space it was opened on, and once the process `exec`s (same pid, same start
//! time, a new program) it reads and writes nothing. So a variable's address learnt from the
//! old program can never be written into the new one, and the same file tells whether the
//! program is still the one gotrace attached to.

use std::{
    fs::File,
    io::{self, IoSliceMut},
    os::unix::fs::FileExt,
    sync::Arc,
};

use nix::{
    sys::uio::{process_vm_readv, RemoteIoVec},
    unistd::Pid,
};

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct ProcessMemory {
    pid: u32,
    /// `/proc/PID/mem` of the program as attached (see the module's comment).
    mem: Arc<File>,
    /// An address mapped for the program's whole life (its entry point), read to tell whether
    /// the program is still there.
    witness: u64,
}

impl ProcessMemory {
    /// Opens the address space the process has now; `witness` is an address mapped in it for
    /// the program's whole life.
    pub fn open(pid: u32, witness: u64) -> Result<Self> {
        let mem = File::options()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/mem"))
            .map_err(|source| Error::ProcAccess {
                pid,
                what: "its memory (/proc/PID/mem)",
                source,
            })?;
        Ok(ProcessMemory {
            pid,
            mem: Arc::new(mem),
            witness,
        })
    }

    /// Whether the program gotrace attached to still owns this address space: false once the
    /// process has exec'd another program (or exited).
    pub fn same_program(&self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.mem.read_at(&mut b, self.witness), Ok(1))
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
        match self.mem.write_at(bytes, addr) {
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
