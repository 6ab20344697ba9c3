//! Every kind of bad input gets one clear line naming the problem and the fix, a non-zero exit,
//! no panic, and leaves nothing loaded in the kernel.

use std::{
    path::Path,
    process::{Command, Output},
};

use anyhow::{Context, Result};
use gotrace_tests::{bpf, children, fixtures, go, gotrace_bin, GoProcess, Toolchain, Variant};

/// Runs `prefix... gotrace attach <pid> --duration 5s` and returns its output.
fn attach_via(prefix: &[&str], pid: u32, extra: &[&str]) -> Result<Output> {
    let bin = gotrace_bin();
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    let out_dir = std::env::temp_dir().join(format!("gotrace-bad-input-{pid}"));
    cmd.args(["attach", &pid.to_string(), "--duration", "5s", "--out"])
        .arg(&out_dir)
        .args(extra);
    children::output(&mut cmd).context("running gotrace")
}

/// The run failed with exit code 1 and exactly one stderr line that contains every needle.
fn assert_one_line_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {stderr}");
    assert!(lines[0].starts_with("gotrace: error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{needle:?} missing from: {stderr}"
        );
    }
}

fn events_fixture(release: &str, variant: Variant) -> Result<GoProcess> {
    let exe = fixtures::build("events", Toolchain::find(release)?, variant)?;
    GoProcess::start(&exe, &[])
}

#[test]
fn dead_pid() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let mut child = children::spawn(&mut Command::new("true"))?;
    let pid = child.id();
    child.wait()?;
    let out = attach_via(&[], pid, &[])?;
    assert_one_line_error(&out, &[&format!("no process with pid {pid}"), "ps -p"]);
    lock.assert_nothing_loaded()
}

#[test]
fn not_a_go_program() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let mut sleeper = children::spawn(Command::new("sleep").arg("30"))?;
    let out = attach_via(&[], sleeper.id(), &[]);
    sleeper.kill()?;
    sleeper.wait()?;
    assert_one_line_error(&out?, &["is not a Go program", "sleep"]);
    lock.assert_nothing_loaded()
}

/// Rewrites the Go version recorded in `.go.buildinfo` (same length), as if another
/// toolchain had built the binary. The program itself still runs: the runtime does not read it.
fn with_go_version(exe: &Path, from: &str, to: &str, dest: &Path) -> Result<()> {
    assert_eq!(from.len(), to.len());
    let mut data = std::fs::read(exe)?;
    let magic = b"\xff Go buildinf:";
    let start = data
        .windows(magic.len())
        .position(|w| w == magic)
        .context("no build info")?;
    let at = data[start..]
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .context("version string not found")?;
    data[start + at..start + at + to.len()].copy_from_slice(to.as_bytes());
    std::fs::write(dest, data)?;
    let mut perms = std::fs::metadata(exe)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(dest, perms)?;
    Ok(())
}

fn unsupported_version(fake: &str, needles: &[&str]) -> Result<()> {
    let lock = bpf::exclusive();
    let tc = Toolchain::find(go::NEWEST)?;
    let exe = fixtures::build("events", tc, Variant::Stripped)?;
    let patched = exe.with_file_name(format!("events-as-{fake}"));
    with_go_version(&exe, &format!("go{}", tc.release), fake, &patched)?;
    let proc = GoProcess::start(&patched, &[])?;
    let out = attach_via(&[], proc.pid(), &[])?;
    assert_one_line_error(&out, needles);
    lock.assert_nothing_loaded()
}

#[test]
fn go_release_without_known_offsets() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    // Stripped, so no DWARF to read offsets from; 1.20 is not in the generated table, and the
    // nearest older release's (1.19) does not fit this program (a Go 1.27 runtime): checked
    // on its live goroutines.
    unsupported_version(
        "go1.20.3",
        &[
            "go1.20.3",
            "no struct offsets for Go 1.20",
            "Go 1.19 do not fit",
            "-ldflags=-w",
        ],
    )
}

#[test]
fn go_release_too_old() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    unsupported_version(
        "go1.17.3",
        &["go1.17.3", "oldest supported release is Go 1.19"],
    )
}

#[test]
fn missing_privileges() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let proc = events_fixture(go::NEWEST, Variant::Default)?;
    // As `nobody`: an unprivileged user has no capability at all (the capabilities that do
    // suffice are tested in `privileges`).
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ];
    // Probes need CAP_SYS_ADMIN, and this process is root's ...
    let out = attach_via(&nobody, proc.pid(), &["--goroutine-events"])?;
    assert_one_line_error(
        &out,
        &[
            "missing privileges",
            "CAP_SYS_ADMIN",
            "CAP_SYS_PTRACE",
            "sudo setcap cap_sys_admin,cap_sys_ptrace+ep",
        ],
    );
    // ... which, also without probes, takes CAP_SYS_PTRACE to read.
    let out = attach_via(&nobody, proc.pid(), &[])?;
    assert_one_line_error(
        &out,
        &[
            "missing privileges",
            "CAP_SYS_PTRACE",
            "sudo setcap cap_sys_ptrace+ep",
        ],
    );
    lock.assert_nothing_loaded()
}

#[test]
fn kernel_without_uprobes() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let proc = events_fixture(go::NEWEST, Variant::Default)?;
    // In a private mount namespace, hide the perf event sources the kernel exports: from
    // gotrace's point of view this kernel has no uprobe PMU.
    let out = attach_via(
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            "mount -t tmpfs none /sys/bus/event_source/devices && exec \"$@\"",
            "sh",
        ],
        proc.pid(),
        // The probes need the kernel's uprobes.
        &["--goroutine-events"],
    )?;
    assert_one_line_error(&out, &["cannot place uprobes", "CONFIG_UPROBE_EVENTS"]);
    lock.assert_nothing_loaded()
}

/// An error after gotrace turned the sampler on (here: `--cgo-malloc` on a program without a C
/// library) still puts `MemProfileRate` back: the sampler guard restores it on every way out.
#[test]
fn error_after_the_sampler_was_turned_on_restores_it() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let exe = fixtures::build("heapsites", Toolchain::find(go::NEWEST)?, Variant::Stripped)?;
    let target = GoProcess::start(&exe, &[])?;
    let out = attach_via(&[], target.pid(), &["--cgo-malloc"])?;
    assert_one_line_error(&out, &["--cgo-malloc", "no C library"]);
    // Read the rate back without writing anything: the program's own 0 again.
    let session = gotrace::Session::attach(
        target.pid(),
        gotrace::AttachOptions {
            probes: gotrace::probes::ProbeSelection::none(),
            read_only: true,
            ..Default::default()
        },
    )?;
    let sampler = session.sampler().context("sampler located")?;
    assert_eq!((sampler.rate_at_attach, sampler.set_by_gotrace), (0, false));
    drop(session);
    drop(target);
    lock.assert_nothing_loaded()
}
