//! Reading the target's memory without stopping it (`process_vm_readv`; needs CAP_SYS_PTRACE
//! or the same uid under the ptrace access rules).

use std::io::{self, IoSlice, IoSliceMut};

use nix::{
    sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec},
    unistd::Pid,
};

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct ProcessMemory {
    pid: u32,
}

impl ProcessMemory {
    pub fn new(pid: u32) -> Self {
        ProcessMemory { pid }
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

    /// Writes into the target (`process_vm_writev`): only for the documented cases where gotrace
    /// changes a runtime setting, such as turning Go's heap sampler on.
    pub fn write(&self, addr: u64, bytes: &[u8]) -> Result<()> {
        let remote = [RemoteIoVec {
            base: addr as usize,
            len: bytes.len(),
        }];
        let n = process_vm_writev(self.nix_pid(), &[IoSlice::new(bytes)], &remote).map_err(
            |errno| Error::Memory {
                pid: self.pid,
                addr,
                source: errno.into(),
            },
        )?;
        if n != bytes.len() {
            return Err(Error::Memory {
                pid: self.pid,
                addr,
                source: io::Error::new(io::ErrorKind::WriteZero, "short write"),
            });
        }
        Ok(())
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
