//! README's "Privileges" section, tested as written: a copy of gotrace with exactly the file
//! capabilities it names, run as an unprivileged user (uid 65534) on real fixtures, with and
//! without a probe flag, under more than one `perf_event_paranoid`; and with one capability
//! fewer, the one-line error naming what is missing and the `setcap` that fixes it.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{ensure, Context, Result};
use gotrace_tests::{bpf, children, fixtures, go, gotrace_bin, GoProcess, Toolchain, Variant};
use serde_json::Value;

/// `setpriv` as uid/gid 65534 with no groups and no inheritable capabilities: only the file
/// capabilities of what it runs count.
const NOBODY: [&str; 5] = [
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all",
    "--",
];

/// `/proc/sys/kernel/perf_event_paranoid` set for the guard's lifetime, then put back.
struct Paranoid {
    original: String,
}

const PARANOID: &str = "/proc/sys/kernel/perf_event_paranoid";

impl Paranoid {
    fn set(value: &str) -> Result<Self> {
        let original = std::fs::read_to_string(PARANOID)?;
        let guard = Paranoid { original };
        std::fs::write(PARANOID, value).with_context(|| format!("writing {PARANOID}"))?;
        ensure!(std::fs::read_to_string(PARANOID)?.trim() == value);
        Ok(guard)
    }
}

impl Drop for Paranoid {
    fn drop(&mut self) {
        std::fs::write(PARANOID, &self.original).expect("restoring perf_event_paranoid");
    }
}

/// A copy of gotrace that uid 65534 can run, in a directory of its own (file capabilities are
/// per file, so the shared build stays untouched); removed when dropped.
struct CappedGotrace {
    dir: PathBuf,
    bin: PathBuf,
}

impl CappedGotrace {
    fn new() -> Result<Self> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let dir = std::env::temp_dir().join(format!("gotrace-caps-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new().mode(0o755).create(&dir)?;
        let bin = dir.join("gotrace");
        let mut copy = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&bin)?;
        std::io::copy(&mut std::fs::File::open(gotrace_bin())?, &mut copy)?;
        Ok(CappedGotrace { dir, bin })
    }

    /// Gives the copy exactly `caps` (`setcap` syntax, e.g. `cap_sys_ptrace+ep`).
    fn setcap(&self, caps: &str) -> Result<()> {
        let status = children::status(Command::new("setcap").arg(caps).arg(&self.bin))
            .context("running setcap (package libcap2-bin)")?;
        ensure!(status.success(), "setcap {caps} failed");
        Ok(())
    }

    /// `gotrace attach PID --duration 1s --json extra...` as uid 65534.
    fn attach(&self, pid: u32, extra: &[&str]) -> Result<Output> {
        // Outside `dir`: uid 65534 cannot write into the directory root made.
        let out = std::env::temp_dir().join(format!("gotrace-caps-out-{pid}-{}", extra.len()));
        let _ = std::fs::remove_dir_all(&out);
        let output = children::output(
            Command::new("setpriv")
                .args(NOBODY)
                .arg(&self.bin)
                .args(["attach", &pid.to_string(), "--duration", "1s", "--json"])
                .arg("--quiet")
                .arg("--out")
                .arg(&out)
                .args(extra),
        )?;
        let _ = std::fs::remove_dir_all(&out);
        Ok(output)
    }
}

impl Drop for CappedGotrace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn workload_exe() -> Result<PathBuf> {
    fixtures::build("workload", Toolchain::find(go::NEWEST)?, Variant::Stripped)
}

/// The fixture as root (a process of another user, for uid 65534).
fn roots_workload(exe: &Path) -> Result<GoProcess> {
    GoProcess::start(exe, &["-mode", "churn"])
}

/// The fixture as uid 65534 itself.
fn nobodys_workload(exe: &Path) -> Result<GoProcess> {
    GoProcess::start_with(
        Command::new("setpriv")
            .args(NOBODY)
            .arg(exe)
            .args(["-mode", "churn"]),
    )
}

/// Exit 0, and with a probe flag the probe was placed and hit.
fn assert_attached(out: &Output, probes: bool) -> Result<()> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "{}: {stderr}", out.status);
    let report: Value = serde_json::from_slice(&out.stdout).context("report.json on stdout")?;
    let hit = report["session"]["probes"]
        .as_array()
        .context("session.probes")?
        .iter()
        .any(|p| p["hits"].as_u64() > Some(0));
    ensure!(hit == probes, "probes hit: {hit}: {}", report["session"]);
    Ok(())
}

/// Exit 1, one line naming `missing` and the `setcap` line that grants `grant`.
fn assert_missing(out: &Output, missing: &str, grant: &str, bin: &Path) -> Result<()> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(1), "{}: {stderr}", out.status);
    let lines: Vec<&str> = stderr.lines().collect();
    ensure!(lines.len() == 1, "one line expected: {stderr}");
    let fix = format!("sudo setcap {grant}+ep {}", bin.display());
    ensure!(
        lines[0].starts_with("gotrace: error: missing privileges: uid 65534 lacks ")
            && lines[0].contains(missing)
            && lines[0].contains(&fix),
        "expected {missing} and `{fix}` in: {stderr}"
    );
    Ok(())
}

/// `setcap cap_sys_admin,cap_sys_ptrace+ep` is enough for everything, on another user's
/// process, with and without a probe flag, whatever `perf_event_paranoid` says.
#[test]
fn the_documented_capabilities_suffice() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let exe = workload_exe()?;
    let gotrace = CappedGotrace::new()?;
    gotrace.setcap("cap_sys_admin,cap_sys_ptrace+ep")?;
    let target = roots_workload(&exe)?;
    let current = std::fs::read_to_string(PARANOID)?;
    for paranoid in [current.trim(), "3"] {
        let _paranoid = Paranoid::set(paranoid)?;
        assert_attached(&gotrace.attach(target.pid(), &[])?, false)
            .with_context(|| format!("probe-free, perf_event_paranoid {paranoid}"))?;
        assert_attached(
            &gotrace.attach(target.pid(), &["--goroutine-events"])?,
            true,
        )
        .with_context(|| format!("--goroutine-events, perf_event_paranoid {paranoid}"))?;
    }
    ensure!(std::fs::read_to_string(PARANOID)? == current);
    lock.assert_nothing_loaded()
}

/// One capability fewer is the clear error naming it, not an EACCES from the kernel; CAP_BPF +
/// CAP_PERFMON (what earlier kernels accepted) are not CAP_SYS_ADMIN.
#[test]
fn one_capability_fewer_is_named() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let exe = workload_exe()?;
    let gotrace = CappedGotrace::new()?;
    let target = roots_workload(&exe)?;
    let both = "cap_sys_admin,cap_sys_ptrace";
    for caps in ["cap_sys_ptrace+ep", "cap_bpf,cap_perfmon,cap_sys_ptrace+ep"] {
        gotrace.setcap(caps)?;
        let out = gotrace.attach(target.pid(), &["--goroutine-events"])?;
        assert_missing(&out, "CAP_SYS_ADMIN", both, &gotrace.bin).context(caps)?;
    }
    gotrace.setcap("cap_sys_admin+ep")?;
    let out = gotrace.attach(target.pid(), &[])?;
    assert_missing(&out, "CAP_SYS_PTRACE", "cap_sys_ptrace", &gotrace.bin)?;
    let out = gotrace.attach(target.pid(), &["--goroutine-events"])?;
    assert_missing(&out, "CAP_SYS_PTRACE", both, &gotrace.bin)?;
    lock.assert_nothing_loaded()
}

/// A process of one's own user needs no CAP_SYS_PTRACE: nothing at all without probes,
/// CAP_SYS_ADMIN alone with them.
#[test]
fn own_process_needs_no_ptrace_capability() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let exe = workload_exe()?;
    let gotrace = CappedGotrace::new()?;
    let target = nobodys_workload(&exe)?;
    assert_attached(&gotrace.attach(target.pid(), &[])?, false).context("no capability")?;
    gotrace.setcap("cap_sys_admin+ep")?;
    assert_attached(
        &gotrace.attach(target.pid(), &["--goroutine-events"])?,
        true,
    )
    .context("cap_sys_admin, --goroutine-events")?;
    lock.assert_nothing_loaded()
}
