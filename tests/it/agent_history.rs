//! The agent's local history and its memory-pressure trigger: real snapshots of a real fixture
//! recorded into a scratch state directory, listed and copied out with the real `gotrace
//! history`, the torn state a `kill -9` or a power loss leaves, the age and size caps; and a
//! fixture growing inside a v1 memory cgroup with a limit, told apart before the OOM killer
//! comes.

use std::{
    collections::BTreeSet,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime},
};

use anyhow::{bail, ensure, Context, Result};
use gotrace::{
    agent::{
        history::{History, HistoryConfig, HistoryReader, Kind},
        pressure::{PressureConfig, PressureWatch},
    },
    probes::ProbeSelection,
    AttachOptions, Snapshot,
};
use gotrace_tests::{children, fixtures, go, gotrace_bin, trace, GoProcess, Toolchain, Variant};

const DAY: Duration = Duration::from_secs(86_400);

/// A healthy fixture, and a real snapshot of it from a probe-free session that ran long
/// enough for a GC cycle to publish a heap profile.
fn fixture_snapshot() -> Result<(GoProcess, String, Snapshot)> {
    let exe = fixtures::build("heapgrow", Toolchain::find(go::NEWEST)?, Variant::Default)?;
    let proc = GoProcess::start(&exe, &["-mode", "steady"])?;
    let tracing = trace::start(
        proc.pid(),
        AttachOptions {
            probes: ProbeSelection::none(),
            tick: Duration::from_millis(250),
            ..AttachOptions::default()
        },
    )?;
    std::thread::sleep(Duration::from_millis(2500));
    let (session, _) = tracing.finish()?;
    let snapshot = session.snapshot(None)?;
    ensure!(snapshot.heap.is_some() && snapshot.goroutines.is_some());
    let start = procfs::process::Process::new(proc.pid() as i32)?
        .stat()?
        .starttime;
    let id = format!("{}-{start}", proc.pid());
    Ok((proc, id, snapshot))
}

fn config(dir: &Path, retention: Duration, max_disk: u64) -> HistoryConfig {
    HistoryConfig {
        state_dir: dir.to_path_buf(),
        retention,
        max_disk,
        no_history: false,
    }
}

fn labels(pid: u32) -> Vec<(&'static str, String)> {
    vec![
        ("service_name", "heapgrow".to_string()),
        ("pid", pid.to_string()),
    ]
}

/// `gotrace history --state-dir DIR ARGS...`: stdout, stderr; fails unless it succeeded.
fn history_cmd(dir: &Path, args: &[&str]) -> Result<(String, String)> {
    let out = children::output(
        Command::new(gotrace_bin())
            .arg("history")
            .arg("--state-dir")
            .arg(dir)
            .args(args),
    )?;
    let stderr = String::from_utf8(out.stderr)?;
    ensure!(
        out.status.success(),
        "gotrace history {args:?} failed: {stderr}"
    );
    Ok((String::from_utf8(out.stdout)?, stderr))
}

/// The snapshot names `gotrace history list ID` prints, oldest first.
fn listed(dir: &Path, id: &str) -> Result<Vec<String>> {
    let (out, _) = history_cmd(dir, &["list", id])?;
    Ok(out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect())
}

fn names(dir: &Path) -> Result<BTreeSet<String>> {
    std::fs::read_dir(dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect()
}

/// Every file's allocated bytes under `dir`, as `du` would count them.
fn du(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            du(&entry.path())?
        } else {
            meta.blocks() * 512
        };
    }
    Ok(total)
}

fn millis(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// When the stored snapshots of `id` were taken, oldest first, in ms since the epoch.
fn stored_times(state: &Path, id: &str) -> Result<Vec<u128>> {
    let target = HistoryReader::open(state)?.target(id)?;
    Ok(target.snapshots.iter().map(|s| millis(s.time)).collect())
}

fn target_dir(state: &Path, id: &str) -> PathBuf {
    state.join("history").join(id)
}

#[test]
fn history_lists_and_copies_real_snapshots() -> Result<()> {
    let _children = children::guard();
    let (proc, id, snapshot) = fixture_snapshot()?;
    let state = fixtures::scratch_dir("history-list")?;
    let mut history = History::open(&config(&state, 7 * DAY, 1 << 30))?;
    let now = SystemTime::now();
    let labels = labels(proc.pid());
    history.record_at(
        &id,
        &labels,
        &snapshot,
        Kind::Interval,
        now - Duration::from_secs(120),
    )?;
    history.record_at(
        &id,
        &labels,
        &snapshot,
        Kind::Interval,
        now - Duration::from_secs(60),
    )?;
    history.record(
        &id,
        &labels,
        &snapshot,
        Kind::Pressure("memory near the limit".into()),
    )?;
    ensure!(
        history.disk_usage() == du(&state)?,
        "the usage counted as du counts it"
    );

    let (targets, _) = history_cmd(&state, &["list"])?;
    let line = targets
        .lines()
        .find(|l| l.starts_with(&id))
        .with_context(|| format!("{id} not listed: {targets}"))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    ensure!(fields[1] == "3", "3 snapshots: {line}");
    ensure!(
        line.contains("service_name=heapgrow") && line.contains(&format!("pid={}", proc.pid()))
    );
    let snaps = listed(&state, &id)?;
    ensure!(snaps.len() == 3, "{snaps:?}");
    let (text, _) = history_cmd(&state, &["list", &id])?;
    ensure!(
        text.lines()
            .last()
            .unwrap()
            .ends_with("pressure: memory near the limit"),
        "{text}"
    );

    // A user who may only read the directory lists it too.
    let out = children::output(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(gotrace_bin())
            .args(["history", "--state-dir"])
            .arg(&state)
            .args(["list", &id]),
    )?;
    ensure!(
        out.status.success() && String::from_utf8(out.stdout)?.lines().count() == 4,
        "as nobody: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Copied out, the snapshot is the output directory attach writes.
    let copy = state.join("copy");
    history_cmd(&state, &["copy", &id, "--out", copy.to_str().unwrap()])?;
    let first = state.join("first");
    history_cmd(
        &state,
        &["copy", &id, &snaps[0], "--out", first.to_str().unwrap()],
    )?;
    let attached = state.join("attached");
    let out = children::output(
        Command::new(gotrace_bin())
            .args([
                "attach",
                &proc.pid().to_string(),
                "--duration",
                "2s",
                "-q",
                "--out",
            ])
            .arg(&attached),
    )?;
    ensure!(
        out.status.success(),
        "attach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        names(&copy)? == names(&attached)?,
        "{:?} vs attach's {:?}",
        names(&copy)?,
        names(&attached)?
    );
    ensure!(names(&first)? == names(&attached)?);
    // report.json read back into a Report and written again: nothing lost on the way.
    let stored = target_dir(&state, &id).join(&snaps[2]).join("report.json");
    ensure!(std::fs::read(&stored)? == std::fs::read(copy.join("report.json"))?);
    let tc = Toolchain::find(go::NEWEST)?;
    let raw = children::output(
        tc.command()
            .args(["tool", "pprof", "-raw"])
            .arg(copy.join("heap.pb.gz")),
    )?;
    ensure!(
        raw.status.success() && String::from_utf8(raw.stdout)?.contains("inuse_space/bytes"),
        "go tool pprof -raw: {}",
        String::from_utf8_lossy(&raw.stderr)
    );

    // Errors are one line naming what to do.
    let bad = children::output(
        Command::new(gotrace_bin())
            .args(["history", "--state-dir"])
            .arg(&state)
            .args(["copy", "1-2", "--out"])
            .arg(state.join("nope")),
    )?;
    let err = String::from_utf8(bad.stderr)?;
    ensure!(
        !bad.status.success() && err.lines().count() == 1 && err.contains("gotrace history list"),
        "{err}"
    );
    std::fs::remove_dir_all(&state)?;
    Ok(())
}

#[test]
fn torn_entries_are_skipped_and_removed() -> Result<()> {
    let _children = children::guard();
    let (proc, id, snapshot) = fixture_snapshot()?;
    let state = fixtures::scratch_dir("history-torn")?;
    let mut history = History::open(&config(&state, 7 * DAY, 1 << 30))?;
    let now = SystemTime::now();
    for age in [3, 2, 1] {
        let at = now - Duration::from_secs(age * 60);
        history.record_at(&id, &labels(proc.pid()), &snapshot, Kind::Interval, at)?;
    }
    drop(history);
    let snaps = listed(&state, &id)?;
    ensure!(snaps.len() == 3);
    let dir = target_dir(&state, &id);
    // What kill -9 leaves mid-record: a temporary entry with some of its files...
    let tmp = dir.join(".tmp-0123456789abcdef");
    std::fs::create_dir(&tmp)?;
    std::fs::copy(
        dir.join(&snaps[0]).join("heap.pb.gz"),
        tmp.join("heap.pb.gz"),
    )?;
    // ...and what a power loss leaves after the rename: a file cut short.
    let report = dir.join(&snaps[1]).join("report.json");
    let len = std::fs::metadata(&report)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&report)?
        .set_len(len / 2)?;

    let (out, err) = history_cmd(&state, &["list", &id])?;
    ensure!(
        listed(&state, &id)? == [snaps[0].clone(), snaps[2].clone()],
        "{out}"
    );
    // The reader skips them: the torn one with a warning, the temporary one silently (the
    // agent may be writing it as the reader looks).
    ensure!(
        err.lines().count() == 1 && err.contains("skipping") && err.contains("report.json"),
        "{err}"
    );
    // The writer removes them when it opens, and keeps everything else.
    let history = History::open(&config(&state, 7 * DAY, 1 << 30))?;
    let left = names(&dir)?;
    let want: BTreeSet<String> = ["target.json", &snaps[0], &snaps[2]]
        .map(String::from)
        .into();
    ensure!(left == want, "{left:?}");
    ensure!(history.disk_usage() == du(&state)?);
    // One writer at a time.
    let second = History::open(&config(&state, 7 * DAY, 1 << 30)).err();
    ensure!(
        second.is_some_and(|e| e.to_string().contains("another gotrace agent")),
        "a second writer opened the same history"
    );
    let reader = HistoryReader::open(&state)?;
    for name in [&snaps[0], &snaps[2]] {
        let (_, back) = reader.load(&id, Some(name))?;
        ensure!(back.report.target.pid == proc.pid() && back.heap.is_some());
    }
    std::fs::remove_dir_all(&state)?;
    Ok(())
}

#[test]
fn history_caps_age_and_size() -> Result<()> {
    let _children = children::guard();
    let (proc, id, snapshot) = fixture_snapshot()?;
    let other = format!("{}-1", proc.pid() + 1);
    let state = fixtures::scratch_dir("history-caps")?;
    let now = SystemTime::now();
    let labels = labels(proc.pid());

    // What one snapshot takes, and its target's own file.
    let mut history = History::open(&config(&state, 7 * DAY, 1 << 30))?;
    history.record_at(&other, &labels, &snapshot, Kind::Interval, now - DAY)?;
    let first = history.disk_usage();
    history.record_at(&other, &labels, &snapshot, Kind::Interval, now - DAY / 2)?;
    let entry = history.disk_usage() - first;
    drop(history);

    // Room for 5 snapshots and two targets' files: the oldest go first, across targets (the
    // other target's, older, before any of this one's), and its emptied directory with them.
    let cap = 5 * entry + 2 * (first - entry) + entry / 2;
    let mut history = History::open(&config(&state, 7 * DAY, cap))?;
    for i in 0..12 {
        let at = now - Duration::from_secs(3600) + Duration::from_secs(i * 60);
        history.record_at(&id, &labels, &snapshot, Kind::Interval, at)?;
        ensure!(
            history.disk_usage() <= cap,
            "{} > {cap} after record {i}",
            history.disk_usage()
        );
    }
    ensure!(
        history.disk_usage() == du(&state)?,
        "counted {} vs du {}",
        history.disk_usage(),
        du(&state)?
    );
    let kept = listed(&state, &id)?;
    ensure!(kept.len() == 5, "{kept:?}");
    ensure!(
        !target_dir(&state, &other).exists(),
        "the other target's snapshots were older"
    );
    let newest = now - Duration::from_secs(3600) + Duration::from_secs(11 * 60);
    ensure!(stored_times(&state, &id)?.last() == Some(&millis(newest)));
    drop(history);
    std::fs::remove_dir_all(&state)?;

    // Age: kept for 30 days, then opened with 7.
    let state = fixtures::scratch_dir("history-age")?;
    let mut history = History::open(&config(&state, 30 * DAY, 1 << 30))?;
    for age in [10 * DAY, 8 * DAY, DAY] {
        history.record_at(&id, &labels, &snapshot, Kind::Interval, now - age)?;
    }
    ensure!(listed(&state, &id)?.len() == 3);
    drop(history);
    let mut history = History::open(&config(&state, 7 * DAY, 1 << 30))?;
    let kept = stored_times(&state, &id)?;
    ensure!(kept == [millis(now - DAY)], "{kept:?}");
    // Recorded already past the retention, a snapshot is not kept.
    history.record_at(&id, &labels, &snapshot, Kind::Interval, now - 8 * DAY)?;
    ensure!(listed(&state, &id)?.len() == 1);
    ensure!(history.disk_usage() == du(&state)?);
    std::fs::remove_dir_all(&state)?;
    Ok(())
}

/// A v1 memory cgroup under this process's own, with a limit; its processes are killed and
/// it is removed when dropped, whatever the test's outcome.
struct Cgroup(PathBuf);

impl Cgroup {
    fn new(tag: &str, limit: u64) -> Result<Cgroup> {
        let own = std::fs::read_to_string("/proc/self/cgroup")?
            .lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
                controllers
                    .split(',')
                    .any(|c| c == "memory")
                    .then(|| path.to_string())
            })
            .context("no v1 memory cgroup in /proc/self/cgroup")?;
        let base = Path::new("/sys/fs/cgroup/memory").join(own.trim_start_matches('/'));
        ensure!(
            base.join("memory.limit_in_bytes").exists(),
            "no v1 memory cgroup at {}",
            base.display()
        );
        let dir = base.join(format!("gotrace-{tag}-{}", std::process::id()));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let cg = Cgroup(dir);
        std::fs::write(cg.0.join("memory.limit_in_bytes"), limit.to_string())?;
        if cg.0.join("memory.memsw.limit_in_bytes").exists() {
            std::fs::write(cg.0.join("memory.memsw.limit_in_bytes"), limit.to_string())?;
        }
        Ok(cg)
    }

    fn add(&self, pid: u32) -> Result<()> {
        Ok(std::fs::write(
            self.0.join("cgroup.procs"),
            pid.to_string(),
        )?)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for _ in 0..100 {
            let procs = std::fs::read_to_string(self.0.join("cgroup.procs")).unwrap_or_default();
            if procs.trim().is_empty() && std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            for pid in procs
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("could not remove the test cgroup {}", self.0.display());
    }
}

/// The percentage a reason gives: "memory 231 MiB is 90% of the cgroup limit ...".
fn percent(reason: &str) -> Result<u32> {
    let word = reason
        .split_whitespace()
        .find(|w| w.ends_with('%'))
        .with_context(|| format!("no percentage in {reason:?}"))?;
    Ok(word.trim_end_matches('%').parse()?)
}

#[test]
fn pressure_is_told_before_the_oom_killer() -> Result<()> {
    let _children = children::guard();
    const LIMIT: u64 = 256 << 20;
    let exe = fixtures::build("memgrow", Toolchain::find(go::NEWEST)?, Variant::Default)?;
    let cgroup = Cgroup::new("pressure", LIMIT)?;
    let mut proc = GoProcess::start(&exe, &[])?;
    cgroup.add(proc.pid())?;
    let mut watch = PressureWatch::new(&PressureConfig::default(), proc.pid());
    let (name, limit) = watch.limit().context("the cgroup's limit not found")?;
    let name = name.to_string();
    ensure!(
        name.ends_with(cgroup.0.file_name().unwrap().to_str().unwrap()) && limit == LIMIT,
        "{name} {limit}"
    );
    ensure!(watch.check().is_none(), "nothing to tell at the start");

    // Grows until told; told before the kernel kills it, and not before 90 % of the limit.
    let grow_until_told =
        |proc: &mut GoProcess, watch: &mut PressureWatch| -> Result<(u64, String)> {
            loop {
                proc.send("grow 8")?;
                let line = proc
                    .expect_line("grown ", Duration::from_secs(20))
                    .context("the fixture was killed before the watch told anything")?;
                let mib: u64 = line.trim_start_matches("grown ").parse()?;
                if let Some(reason) = watch.check() {
                    return Ok((mib, reason));
                }
                if mib << 20 >= LIMIT {
                    bail!("{mib} MiB held and nothing told");
                }
            }
        };
    let (mib, reason) = grow_until_told(&mut proc, &mut watch)?;
    ensure!(
        percent(&reason)? >= 90 && reason.contains(&name) && reason.contains("256.0 MiB"),
        "{reason}"
    );
    ensure!(
        mib << 20 >= LIMIT * 8 / 10,
        "told at {mib} MiB held: {reason}"
    );
    ensure!(
        Path::new(&format!("/proc/{}", proc.pid())).exists(),
        "still alive"
    );
    // Once per crossing.
    ensure!(watch.check().is_none());
    // Re-armed once use falls again, and told again at the next crossing.
    proc.send("free")?;
    proc.expect_line("freed", Duration::from_secs(20))?;
    ensure!(watch.check().is_none(), "below the threshold");
    let (again, reason) = grow_until_told(&mut proc, &mut watch)?;
    ensure!(
        percent(&reason)? >= 90 && again << 20 >= LIMIT * 8 / 10,
        "{again} MiB: {reason}"
    );
    drop(proc);
    drop(cgroup);
    Ok(())
}

/// `gotrace agent` itself: killed with SIGKILL mid-run and started again on the same state
/// directory, it loses no whole snapshot; a target growing toward its cgroup's limit gets a
/// pressure snapshot in the history while it still runs.
#[test]
fn agent_history_survives_sigkill_and_takes_pressure_snapshots() -> Result<()> {
    let _children = children::guard();
    const LIMIT: u64 = 256 << 20;
    let state = fixtures::scratch_dir("agent-history")?;
    // A copy of its own, so that the agent watches this test's fixture and no other.
    let built = fixtures::build("memgrow", Toolchain::find(go::NEWEST)?, Variant::Default)?;
    let exe = state.join("memgrow");
    std::fs::copy(&built, &exe)?;
    let include = format!("{}/*", state.display());
    let cgroup = Cgroup::new("agent-pressure", LIMIT)?;
    let mut proc = GoProcess::start(&exe, &[])?;
    cgroup.add(proc.pid())?;
    let args = [
        "--include",
        include.as_str(),
        "--min-age",
        "1s",
        "--interval",
        "1s",
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let wait_for_snapshots = |id: &str, n: usize| -> Result<Vec<String>> {
        let begin = std::time::Instant::now();
        loop {
            let snaps = HistoryReader::open(&state)
                .and_then(|r| r.target(id))
                .map(|t| t.snapshots)
                .unwrap_or_default();
            if snaps.len() >= n {
                return Ok(snaps.into_iter().map(|s| s.name).collect());
            }
            ensure!(
                begin.elapsed() < Duration::from_secs(60),
                "{} snapshots of {id} after 60 s",
                snaps.len()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    let agent = gotrace_tests::agent::Agent::start(&args)?;
    let id = agent.wait_for(proc.pid(), Duration::from_secs(15))?["id"]
        .as_str()
        .context("the target's id")?
        .to_string();
    wait_for_snapshots(&id, 3)?;
    agent.kill();
    let before = listed(&state, &id)?;
    let agent = gotrace_tests::agent::Agent::start(&args)?;
    agent.wait_for(proc.pid(), Duration::from_secs(15))?;
    let after = wait_for_snapshots(&id, before.len() + 2)?;
    ensure!(
        before.iter().all(|s| after.contains(s)),
        "lost: {before:?} -> {after:?}"
    );
    let left: Vec<String> = names(&target_dir(&state, &id))?
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    ensure!(
        left.is_empty(),
        "what the kill left was not removed: {left:?}"
    );

    // Toward the limit, 8 MiB at a time, as long as no pressure snapshot is in the history.
    let pressure = |id: &str| -> Result<bool> {
        let target = HistoryReader::open(&state)?.target(id)?;
        Ok(target
            .snapshots
            .iter()
            .any(|s| matches!(s.kind, Kind::Pressure(_))))
    };
    let mut held = 0;
    while !pressure(&id)? {
        ensure!(
            held << 20 < LIMIT,
            "{held} MiB held and no pressure snapshot"
        );
        proc.send("grow 8")?;
        let line = proc
            .expect_line("grown ", Duration::from_secs(20))
            .context("the fixture was killed before a pressure snapshot was taken")?;
        held = line.trim_start_matches("grown ").parse()?;
        // The agent checks every second.
        std::thread::sleep(Duration::from_millis(1500));
    }
    ensure!(
        held << 20 >= LIMIT * 8 / 10,
        "a pressure snapshot at {held} MiB held"
    );
    ensure!(
        Path::new(&format!("/proc/{}", proc.pid())).exists(),
        "still alive"
    );
    let log = agent.log().join("\n");
    ensure!(log.contains("memory-pressure"), "{log}");
    ensure!(agent.stop()?.success());
    drop(proc);
    drop(cgroup);
    std::fs::remove_dir_all(&state)?;
    Ok(())
}
