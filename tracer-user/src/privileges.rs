//! Checks made before touching the kernel, so that a missing privilege or kernel feature is one
//! clear message instead of an EPERM from deep inside the loader.

use crate::error::{Error, Result};

const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capabilities needed: load BPF programs (CAP_BPF), create uprobe perf events
/// (CAP_PERFMON) — CAP_SYS_ADMIN covers both on older kernels — and read another process's
/// executable and memory (CAP_SYS_PTRACE).
pub fn check() -> Result<()> {
    let caps = procfs::process::Process::myself()
        .and_then(|me| me.status())
        .map(|status| status.capeff)
        .unwrap_or(0);
    let has = |bit: u32| caps & (1u64 << bit) != 0;
    let admin = has(CAP_SYS_ADMIN);
    let mut missing = Vec::new();
    if !(has(CAP_BPF) || admin) {
        missing.push("CAP_BPF");
    }
    if !(has(CAP_PERFMON) || admin) {
        missing.push("CAP_PERFMON");
    }
    if !has(CAP_SYS_PTRACE) {
        missing.push("CAP_SYS_PTRACE");
    }
    if missing.is_empty() {
        return Ok(());
    }
    let uid = rustix::process::geteuid().as_raw();
    Err(Error::Privileges {
        missing: format!("running as uid {uid} without {}", missing.join(", ")),
    })
}

/// The kernel must expose the uprobe PMU (what perf_event_open-based uprobes attach through).
pub fn check_kernel() -> Result<()> {
    let pmu = "/sys/bus/event_source/devices/uprobe/type";
    if std::path::Path::new(pmu).exists() {
        Ok(())
    } else {
        Err(Error::NoUprobeSupport {
            detail: format!("{pmu} does not exist"),
        })
    }
}
