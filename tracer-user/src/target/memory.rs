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

    pub fn read_vec(&self, addr: u64, len: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.read(addr, &mut v)?;
        Ok(v)
    }
}
