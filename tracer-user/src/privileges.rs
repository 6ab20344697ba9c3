//! Checks made before touching the target or the kernel, so that a missing privilege is one
//! clear message instead of an EACCES from deep inside the loader.
//!
//! Measured on Linux 6.18 as uid 65534 with file capabilities: reading and writing another
//! user's process (`/proc/PID/exe`, `/proc/PID/mem`) needs CAP_SYS_PTRACE; the probe flags need
//! CAP_SYS_ADMIN, because uprobes created through `perf_event_open` (the uprobe PMU) require it
//! since Linux 6.16 (commit ba677dbe77af, "perf: Revert to requiring CAP_SYS_ADMIN for
//! uprobes"). CAP_BPF + CAP_PERFMON, enough from 5.8 to 6.15, fail there with EACCES, whatever
//! `perf_event_paranoid` says (-1, 2 and 3 tried), and CAP_SYS_ADMIN covers CAP_BPF and
//! CAP_PERFMON. Nothing else is needed: BPF memory is charged to the memory cgroup (no
//! RLIMIT_MEMLOCK, CAP_IPC_LOCK or CAP_SYS_RESOURCE).

use crate::error::{Error, Result};

const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;

/// The capabilities attaching to `pid` needs and this process lacks: CAP_SYS_ADMIN when
/// `probes` (any probe flag), CAP_SYS_PTRACE when the kernel refuses access to the target's
/// memory (another user's process, or one that is not dumpable).
pub fn check(pid: u32, probes: bool) -> Result<()> {
    let caps = procfs::process::Process::myself()
        .and_then(|me| me.status())
        .map(|status| status.capeff)
        .unwrap_or(0);
    let has = |bit: u32| caps & (1u64 << bit) != 0;
    let mut missing = Vec::new();
    if probes && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_SYS_ADMIN (the probe flags place uprobes)");
    }
    if !has(CAP_SYS_PTRACE) && !may_access_memory(pid) {
        missing.push("CAP_SYS_PTRACE (the process belongs to another user)");
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Privileges {
        uid: rustix::process::geteuid().as_raw(),
        missing: missing.join(" and "),
        grant: if probes {
            "cap_sys_admin,cap_sys_ptrace"
        } else {
            "cap_sys_ptrace"
        },
        exe: std::env::current_exe().map_or_else(|_| "gotrace".into(), |p| p.display().to_string()),
    })
}

/// Whether the kernel lets this process open the target's memory: the ptrace access check
/// gotrace's reads and writes go through. A process that does not exist passes: opening it
/// reports that.
fn may_access_memory(pid: u32) -> bool {
    match std::fs::File::open(format!("/proc/{pid}/mem")) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::PermissionDenied,
    }
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
