//! Kernel-side hygiene for tests: one tracing test at a time, and proof that nothing of
//! gotrace's stays loaded afterwards.

use std::{fs::File, os::fd::AsRawFd};

use anyhow::{bail, Result};

/// Held while a test has (or may have) gotrace programs loaded. A file lock, so that it also
/// orders tests running in different processes (cargo-nextest runs one process per test).
pub struct Exclusive {
    _lock: File,
}

pub fn exclusive() -> Exclusive {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("gotrace-tests.lock"))
        .expect("creating the test lock file");
    // SAFETY: flock on a descriptor we own; blocks until the lock is ours.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    Exclusive { _lock: file }
}

impl Exclusive {
    /// Fails if any gotrace program is still loaded in the kernel.
    pub fn assert_nothing_loaded(&self) -> Result<()> {
        let loaded = gotrace::probes::loaded_in_kernel();
        if !loaded.is_empty() {
            bail!("gotrace BPF programs still loaded: {loaded:?}");
        }
        Ok(())
    }
}
