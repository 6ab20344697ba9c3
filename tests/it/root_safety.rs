//! Files gotrace writes as root: an unprivileged user who prepared the place cannot make it
//! overwrite another file or write where it was not asked; bad output paths fail when the
//! command starts, and a write that fails late moves the files rather than losing them.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use anyhow::{ensure, Context, Result};
use gotrace_tests::{bpf, children, fixtures, go, gotrace_bin, GoProcess, Toolchain, Variant};

/// A fresh path under /tmp (world-writable, as an attacker needs), removed first.
fn scratch(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("gotrace-rs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    let _ = std::fs::remove_file(&p);
    p
}

/// Runs a shell script as the unprivileged user `nobody`, as an attacker would.
fn as_attacker(script: &str) -> Result<()> {
    let out = children::output(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
            ])
            .arg(script),
    )?;
    ensure!(
        out.status.success(),
        "attacker's script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A root-owned 0600 file the attacker wants overwritten.
struct Victim(PathBuf);

impl Victim {
    fn new(tag: &str) -> Result<Self> {
        let p = scratch(&format!("victim-{tag}"));
        std::fs::write(&p, "root's secret\n")?;
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        Ok(Victim(p))
    }

    fn assert_untouched(&self) -> Result<()> {
        ensure!(
            std::fs::read_to_string(&self.0)? == "root's secret\n",
            "victim overwritten"
        );
        Ok(())
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn heapsites() -> Result<GoProcess> {
    let exe = fixtures::build("heapsites", Toolchain::find(go::NEWEST)?, Variant::Stripped)?;
    GoProcess::start(&exe, &[])
}

fn gotrace(args: &[&str]) -> Result<Output> {
    Ok(children::output(Command::new(gotrace_bin()).args(args))?)
}

/// Exit 1 with one `gotrace: error:` line containing every needle, within `within`.
fn assert_refused(out: &Output, started: Instant, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("gotrace: error: "), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{n:?} missing: {stderr}");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "refused only after {took:?}"
    );
}

/// The reproduction: `nobody` makes `/tmp/ww/out` and links the names gotrace writes
/// (and the temporary names it used to) to a root-only file. gotrace refuses the directory
/// before tracing, writes nothing through the links, and the same goes for `--flamegraph` and
/// `record -o` into a directory of nobody's.
#[test]
fn directory_prepared_by_another_user_is_refused() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let target = heapsites()?;
    let pid = target.pid().to_string();
    let victim = Victim::new("dir")?;
    let ww = scratch("ww");
    let out = ww.join("out");
    let v = victim.0.display();
    as_attacker(&format!(
        "mkdir -p {out} && cd {out} && for n in report.json .report.json.tmp heap.pb.gz \
         .heap.pb.gz.tmp x.svg; do ln -s {v} $n; done",
        out = out.display()
    ))?;
    let started = Instant::now();
    let attach = gotrace(&[
        "attach",
        &pid,
        "--duration",
        "30s",
        "--out",
        &out.display().to_string(),
    ])?;
    assert_refused(
        &attach,
        started,
        &[&out.display().to_string(), "belongs to uid 65534"],
    );

    let started = Instant::now();
    let svg = out.join("x.svg").display().to_string();
    let flame = gotrace(&["attach", &pid, "--duration", "30s", "--flamegraph", &svg])?;
    assert_refused(&flame, started, &["belongs to uid 65534"]);

    let started = Instant::now();
    let pb = out.join("heap.pb.gz").display().to_string();
    let record = gotrace(&["record", &pid, "--duration", "30s", "-o", &pb])?;
    assert_refused(&record, started, &["belongs to uid 65534"]);

    victim.assert_untouched()?;
    for entry in std::fs::read_dir(&out)? {
        let entry = entry?;
        ensure!(
            entry.file_type()?.is_symlink(),
            "gotrace wrote {:?}",
            entry.path()
        );
    }
    std::fs::remove_dir_all(&ww)?;
    drop(target);
    lock.assert_nothing_loaded()
}

/// A symlink on the way, planted by `nobody` in a directory of theirs, is not followed: the
/// files would land in a root-owned directory the user never named.
#[test]
fn symlink_on_the_way_is_not_followed() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let target = heapsites()?;
    let rootdir = scratch("rootdir");
    std::fs::create_dir(&rootdir)?;
    let ww = scratch("ww-link");
    as_attacker(&format!(
        "mkdir {ww} && ln -s {root} {ww}/link",
        ww = ww.display(),
        root = rootdir.display()
    ))?;
    let started = Instant::now();
    let out = ww.join("link/out").display().to_string();
    let o = gotrace(&[
        "attach",
        &target.pid().to_string(),
        "--duration",
        "30s",
        "--out",
        &out,
    ])?;
    assert_refused(&o, started, &["refusing to follow the symlink link"]);
    ensure!(
        std::fs::read_dir(&rootdir)?.next().is_none(),
        "written into {rootdir:?}"
    );
    std::fs::remove_dir_all(&ww)?;
    std::fs::remove_dir_all(&rootdir)?;
    drop(target);
    lock.assert_nothing_loaded()
}

/// In a sticky world-writable directory (/tmp), names `nobody` planted for `--flamegraph`
/// are replaced by gotrace's own files, never followed.
#[test]
fn names_planted_in_tmp_are_replaced_not_followed() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let target = heapsites()?;
    let victim = Victim::new("tmp")?;
    let svg = scratch("live.svg");
    as_attacker(&format!("ln -s {} {}", victim.0.display(), svg.display()))?;
    let o = gotrace(&[
        "attach",
        &target.pid().to_string(),
        "--duration",
        "1s",
        "--quiet",
        "--flamegraph",
        &svg.display().to_string(),
        "--out",
        &scratch("tmp-out").display().to_string(),
    ])?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    victim.assert_untouched()?;
    let meta = std::fs::symlink_metadata(&svg)?;
    ensure!(
        meta.is_file() && meta.uid() == 0,
        "{svg:?} is still nobody's link"
    );
    ensure!(std::fs::read_to_string(&svg)?.contains("<svg"));
    std::fs::remove_file(&svg)?;
    let _ = std::fs::remove_dir_all(scratch("tmp-out"));
    drop(target);
    lock.assert_nothing_loaded()
}

/// `--out` on a file, a read-only mount, a missing directory for `--flamegraph`: refused at
/// the start, not after a 30 s session.
#[test]
fn bad_output_paths_fail_at_the_start() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let target = heapsites()?;
    let pid = target.pid().to_string();
    let file = scratch("a-file");
    std::fs::write(&file, "")?;
    let started = Instant::now();
    let o = gotrace(&[
        "attach",
        &pid,
        "-d",
        "30s",
        "--out",
        &file.display().to_string(),
    ])?;
    assert_refused(&o, started, &["is not a directory"]);

    let ro = scratch("ro");
    std::fs::create_dir(&ro)?;
    let started = Instant::now();
    let o = in_private_mount(
        &format!("mount -t tmpfs -o ro none {}", ro.display()),
        &[
            "attach",
            &pid,
            "-d",
            "30s",
            "--out",
            &ro.join("out").display().to_string(),
        ],
    )?;
    assert_refused(&o, started, &["Read-only file system"]);

    let started = Instant::now();
    let missing = scratch("missing").join("live.svg").display().to_string();
    let o = gotrace(&["attach", &pid, "-d", "30s", "--flamegraph", &missing])?;
    assert_refused(&o, started, &["does not exist"]);
    std::fs::remove_file(&file)?;
    std::fs::remove_dir(&ro)?;
    drop(target);
    lock.assert_nothing_loaded()
}

/// Runs `setup`, then gotrace with `args`, in a private mount namespace.
fn in_private_mount(setup: &str, args: &[&str]) -> Result<Output> {
    Ok(children::output(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(format!("{setup} && exec \"$@\""))
            .arg("sh")
            .arg(gotrace_bin())
            .args(args),
    )?)
}

/// The output directory turns read-only during the session: the files go to a fresh directory
/// gotrace names, and the run is an error.
#[test]
fn late_write_failure_moves_the_files() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let target = heapsites()?;
    let mnt = scratch("late");
    std::fs::create_dir(&mnt)?;
    let setup = format!(
        "mount -t tmpfs none {m} && {{ (sleep 1; mount -o remount,ro {m}) & }}",
        m = mnt.display()
    );
    let out = mnt.join("out").display().to_string();
    let pid = target.pid().to_string();
    let o = in_private_mount(
        &setup,
        &["attach", &pid, "-d", "3s", "--quiet", "--out", &out],
    )?;
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().context("no stderr")?;
    assert!(
        last.starts_with("gotrace: error: writing ") && last.contains("Read-only file system"),
        "{stderr}"
    );
    let moved: &Path = last
        .split("gotrace wrote its files to ")
        .nth(1)
        .and_then(|s| s.strip_suffix(" instead"))
        .context("no new directory named")?
        .as_ref();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(moved.join("report.json"))?)?;
    assert_eq!(report["session"]["end_reason"], "duration");
    assert!(
        stderr.contains(&format!("in {}", moved.display())),
        "{stderr}"
    );
    std::fs::remove_dir_all(moved)?;
    std::fs::remove_dir(&mnt)?;
    drop(target);
    lock.assert_nothing_loaded()
}
