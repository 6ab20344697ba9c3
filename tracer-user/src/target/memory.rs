//! Reading the target's memory without stopping it (`process_vm_readv`; needs CAP_SYS_PTRACE
//! or the same uid under the ptrace access rules).

use std::io;

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct ProcessMemory {
    pid: u32,
}

impl ProcessMemory {
    pub fn new(pid: u32) -> Self {
        ProcessMemory { pid }
    }

    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let n =
            unsafe { libc::process_vm_readv(self.pid as libc::pid_t, &local, 1, &remote, 1, 0) };
        if n < 0 {
            return Err(Error::Memory {
                pid: self.pid,
                addr,
                source: io::Error::last_os_error(),
            });
        }
        if n as usize != buf.len() {
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
        let local = libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        let n =
            unsafe { libc::process_vm_writev(self.pid as libc::pid_t, &local, 1, &remote, 1, 0) };
        if n < 0 || n as usize != bytes.len() {
            return Err(Error::Memory {
                pid: self.pid,
                addr,
                source: io::Error::last_os_error(),
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
            let mut local: Vec<libc::iovec> = chunk_out
                .iter_mut()
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: len,
                })
                .collect();
            let remote: Vec<libc::iovec> = chunk_addrs
                .iter()
                .map(|&a| libc::iovec {
                    iov_base: a as *mut libc::c_void,
                    iov_len: len,
                })
                .collect();
            let n = unsafe {
                libc::process_vm_readv(
                    self.pid as libc::pid_t,
                    local.as_mut_ptr(),
                    local.len() as libc::c_ulong,
                    remote.as_ptr(),
                    remote.len() as libc::c_ulong,
                    0,
                )
            };
            if n < 0 || n as usize != len * chunk_addrs.len() {
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
