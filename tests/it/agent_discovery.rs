//! The agent's discovery (`gotrace::agent::discover`) over the real `/proc`: fixtures on the
//! oldest and the newest Go, stripped or not, beside a non-Go process; exits, new processes,
//! an `exec`, the selection flags, and a fixture moved into a container's cgroup.
//!
//! Every fixture runs through a hard link in a directory of the test's own, and the selection
//! includes only that directory (and `sleep`, a non-Go program): other tests' processes, on
//! the same host at the same time, never enter the comparisons.

use std::{
    collections::BTreeSet,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use gotrace::agent::discover::{Candidate, Discovery, Glob, Selection};
use gotrace_tests::{children, fixtures, go, GoProcess, Toolchain, Variant};

/// The test's own directory, beside the fixture builds (hard links need the same file system).
fn own_dir(tag: &str) -> Result<PathBuf> {
    let dir = fixtures::workspace_root()
        .join("target/agent-discovery")
        .join(format!("{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Fixture `name` built for `release` and `variant`, linked into `dir` as `link`.
fn linked(dir: &Path, name: &str, release: &str, variant: Variant, link: &str) -> Result<PathBuf> {
    let exe = fixtures::build(name, Toolchain::find(release)?, variant)?;
    let to = dir.join(link);
    std::fs::hard_link(&exe, &to).with_context(|| format!("linking {}", exe.display()))?;
    Ok(to)
}

/// What the build info says `release`'s binaries are (Debian's 1.19 is a patch release of it).
fn is_release(go_version: &str, release: &str) -> bool {
    let v = format!("go{release}");
    go_version == v || go_version.starts_with(&format!("{v}."))
}

/// Everything in `dir`, plus `sleep` (not Go: the discovery must leave it out), newer than a
/// millisecond.
fn selection(dir: &Path) -> Selection {
    Selection {
        include: vec![
            Glob::new(&format!("{}/*", dir.display())).unwrap(),
            Glob::new("sleep").unwrap(),
        ],
        min_age: Duration::from_millis(1),
        max_targets: 10_000,
        ..Selection::default()
    }
}

fn pids(found: &[Candidate]) -> BTreeSet<u32> {
    found.iter().map(|c| c.key.pid).collect()
}

fn find(found: &[Candidate], pid: u32) -> &Candidate {
    found
        .iter()
        .find(|c| c.key.pid == pid)
        .unwrap_or_else(|| panic!("pid {pid} not discovered"))
}

fn exe_id(path: &Path) -> (u64, u64) {
    let m = std::fs::metadata(path).unwrap();
    (m.dev(), m.ino())
}

/// Runs `scan`, printing what it cost (wall and this thread's CPU time: the machine running
/// the tests is shared) and how many processes there were.
fn timed(scan: impl FnOnce() -> Vec<Candidate>, what: &str) -> Vec<Candidate> {
    let cpu = || {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    };
    let (wall, before) = (Instant::now(), cpu());
    let found = scan();
    let (wall, cpu) = (wall.elapsed(), cpu() - before);
    let processes = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
            })
            .count()
        })
        .unwrap_or(0);
    eprintln!(
        "one {what} scan of {processes} processes ({} Go): {wall:?}, {cpu:?} of CPU",
        found.len()
    );
    found
}

fn sleeper() -> Result<std::process::Child> {
    Ok(children::spawn(Command::new("sleep").arg("600"))?)
}

#[test]
fn agent_discovery_lists_exactly_the_go_processes_with_their_labels() -> Result<()> {
    let _children = children::guard();
    let dir = own_dir("labels")?;
    let old = linked(&dir, "goroutines", go::OLDEST, Variant::Default, "old-app")?;
    let new = linked(&dir, "goroutines", go::NEWEST, Variant::Stripped, "new-app")?;
    let a = GoProcess::start_with(Command::new(&old).env("OTEL_SERVICE_NAME", "checkout"))?;
    let b = GoProcess::start(&new, &[])?;
    let mut sleep = sleeper()?;

    let mut discovery = Discovery::new(selection(&dir));
    let found = discovery.scan();
    assert_eq!(
        pids(&found),
        BTreeSet::from([a.pid(), b.pid()]),
        "sleep {} is not Go",
        sleep.id()
    );
    assert!(
        found.windows(2).all(|w| w[0].key < w[1].key),
        "oldest first"
    );
    assert_eq!(discovery.over_limit(), 0);

    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    for (proc, path, release, service) in [
        (&a, &old, go::OLDEST, "checkout"),
        // Without a service name in its environment: its module's last element.
        (&b, &new, go::NEWEST, "fixtures"),
    ] {
        let c = find(&found, proc.pid());
        let start_time = procfs::process::Process::new(proc.pid() as i32)?
            .stat()?
            .starttime;
        assert_eq!(c.key.start_time, start_time);
        assert_eq!(
            gotrace::agent::discover::TargetKey::parse(&c.key.id()),
            Some(c.key)
        );
        assert_eq!(&c.exe, path);
        assert_eq!(c.exe_id, exe_id(path));
        let l = &c.labels;
        assert_eq!(l.exe, path.file_name().unwrap().to_str().unwrap());
        assert!(
            is_release(&l.go_version, release),
            "{} is not Go {release}",
            l.go_version
        );
        assert_eq!(l.module.as_deref(), Some("gotrace.dev/fixtures"));
        assert_eq!(l.pid, proc.pid());
        assert_eq!(l.service_name, service);
        assert_eq!(l.host, host.trim());
    }

    // Too young for an hour's minimum age.
    let mut patient = Discovery::new(Selection {
        min_age: Duration::from_secs(3600),
        ..selection(&dir)
    });
    assert_eq!(pids(&patient.scan()), BTreeSet::new());

    // Without an include list: every Go process on the host, ours among them; the scan's
    // cost printed, cold (every executable on the host read) and warm (all known).
    let mut everything = Discovery::new(Selection {
        min_age: Duration::from_millis(1),
        max_targets: 10_000,
        ..Selection::default()
    });
    let all = pids(&timed(|| everything.scan(), "cold"));
    timed(|| everything.scan(), "warm");
    assert!(
        all.is_superset(&BTreeSet::from([a.pid(), b.pid()])),
        "{all:?}"
    );
    assert!(!all.contains(&sleep.id()));

    // One exits: gone from the next scan; another starts: there.
    drop(a);
    let c = GoProcess::start(&old, &[])?;
    assert_eq!(pids(&discovery.scan()), BTreeSet::from([b.pid(), c.pid()]));

    // A zombie (killed, not reaped yet) is no target, while its /proc entry stays.
    let mut z = children::spawn(
        Command::new(&new)
            .stdin(Stdio::piped())
            .stdout(Stdio::null()),
    )?;
    std::thread::sleep(Duration::from_millis(20));
    assert!(pids(&discovery.scan()).contains(&z.id()));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(z.id() as i32).unwrap(),
        rustix::process::Signal::KILL,
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while procfs::process::Process::new(z.id() as i32)?.stat()?.state != 'Z' {
        assert!(
            Instant::now() < deadline,
            "pid {} never became a zombie",
            z.id()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(pids(&discovery.scan()), BTreeSet::from([b.pid(), c.pid()]));
    z.wait()?;
    children::kill_group(&mut sleep);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn agent_discovery_selects_by_name_module_and_count() -> Result<()> {
    let _children = children::guard();
    let dir = own_dir("select")?;
    let alpha = linked(
        &dir,
        "goroutines",
        go::NEWEST,
        Variant::Default,
        "alpha-svc",
    )?;
    let beta = linked(&dir, "goroutines", go::NEWEST, Variant::Default, "beta-svc")?;
    let a = GoProcess::start(&alpha, &[])?;
    // Started after a clock tick at least, so that the start times tell which is older.
    std::thread::sleep(Duration::from_millis(50));
    let b = GoProcess::start(&beta, &[])?;
    let glob = |s: &str| Glob::new(s).unwrap();
    // What one scan finds among ours with `change` made to the selection, and how many the
    // limit left out.
    let scan = |change: &dyn Fn(&mut Selection)| {
        let mut s = selection(&dir);
        change(&mut s);
        let mut d = Discovery::new(s);
        let found = pids(&d.scan());
        (found, d.over_limit())
    };
    let both = (BTreeSet::from([a.pid(), b.pid()]), 0);
    let only_a = (BTreeSet::from([a.pid()]), 0);
    let none = (BTreeSet::new(), 0);

    assert_eq!(scan(&|_| {}), both);
    // By file name, by full path.
    assert_eq!(scan(&|s| s.include = vec![glob("alpha-*")]), only_a);
    let full = alpha.display().to_string();
    assert_eq!(scan(&|s| s.include = vec![glob(&full)]), only_a);
    assert_eq!(scan(&|s| s.exclude = vec![glob("beta-*")]), only_a);
    // By module.
    assert_eq!(scan(&|s| s.module = vec![glob("gotrace.dev/*")]), both);
    assert_eq!(scan(&|s| s.module = vec![glob("github.com/*")]), none);
    assert_eq!(
        scan(&|s| s.exclude_module = vec![glob("gotrace.dev/fixtures")]),
        none
    );
    // At most one: the older, the other counted.
    assert_eq!(scan(&|s| s.max_targets = 1), (BTreeSet::from([a.pid()]), 1));
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn agent_discovery_sees_an_exec_as_another_program() -> Result<()> {
    let _children = children::guard();
    let dir = own_dir("exec")?;
    let first = linked(&dir, "reexec", go::NEWEST, Variant::Default, "first")?;
    let second = linked(&dir, "goroutines", go::OLDEST, Variant::Default, "second")?;
    // `first` execs itself with a service name in its environment, then `second`.
    let (first_s, second_s) = (first.to_str().unwrap(), second.to_str().unwrap());
    let args = ["-env", "OTEL_SERVICE_NAME=again", first_s, second_s];
    let mut p = GoProcess::start(&first, &args)?;
    let mut discovery = Discovery::new(selection(&dir));
    let mut scan = |p: &GoProcess| find(&discovery.scan(), p.pid()).clone();
    let before = scan(&p);
    assert_eq!(before.exe_id, exe_id(&first));
    assert_eq!(before.labels.service_name, "fixtures");
    assert!(is_release(&before.labels.go_version, go::NEWEST));

    // exec keeps the pid and the start time: the executable tells one program from another,
    // the stack's new place the same executable run again (with another environment).
    p.send("exec")?;
    p.expect_line("ready", Duration::from_secs(30))?;
    let again = scan(&p);
    assert_eq!(again.key, before.key);
    assert_eq!(again.exe_id, before.exe_id);
    assert_ne!(again.exec_mark, before.exec_mark);
    assert_eq!(again.labels.service_name, "again");

    p.send("exec")?;
    p.expect_line("ready", Duration::from_secs(30))?;
    let after = scan(&p);
    assert_eq!(after.key, before.key);
    assert_eq!(after.exe_id, exe_id(&second));
    assert_ne!(after.exec_mark, again.exec_mark);
    assert_eq!(after.labels.exe, "second");
    assert!(
        is_release(&after.labels.go_version, go::OLDEST),
        "{}",
        after.labels.go_version
    );
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A cgroup directory made for the test, in the v1 memory hierarchy below this process's own
/// (the v2 hierarchy when there is no v1 memory controller); removed when dropped, its
/// processes moved back first.
struct CgroupDir {
    path: PathBuf,
    made: Vec<PathBuf>,
    home: PathBuf,
}

impl CgroupDir {
    fn create(relative: &str) -> Result<CgroupDir> {
        let mounts = std::fs::read_to_string("/proc/self/mounts")?;
        let mount_of = |v1_controller: Option<&str>| {
            mounts.lines().find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let ok = match v1_controller {
                    Some(c) => f.get(2) == Some(&"cgroup") && f.get(3)?.split(',').any(|o| o == c),
                    None => f.get(2) == Some(&"cgroup2"),
                };
                ok.then(|| PathBuf::from(f[1]))
            })
        };
        let own = std::fs::read_to_string("/proc/self/cgroup")?;
        let own_path = |pred: &dyn Fn(&str, &str) -> bool| {
            own.lines().find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (id, ctl, path) = (f.next()?, f.next()?, f.next()?);
                pred(id, ctl).then(|| path.trim_start_matches('/').to_string())
            })
        };
        let (mount, mine) = match mount_of(Some("memory")) {
            Some(m) => (m, own_path(&|_, c| c.split(',').any(|c| c == "memory"))),
            None => (
                mount_of(None).context("no cgroup hierarchy mounted")?,
                own_path(&|id, c| id == "0" && c.is_empty()),
            ),
        };
        let home = mount.join(mine.context("this process's own cgroup")?);
        let mut dir = CgroupDir {
            path: home.clone(),
            made: Vec::new(),
            home,
        };
        for part in relative.split('/') {
            dir.path.push(part);
            if !dir.path.exists() {
                std::fs::create_dir(&dir.path)
                    .with_context(|| format!("creating {}", dir.path.display()))?;
                dir.made.push(dir.path.clone());
            }
        }
        Ok(dir)
    }

    fn enter(&self, pid: u32) -> Result<()> {
        std::fs::write(self.path.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving {pid} into {}", self.path.display()))
    }
}

impl Drop for CgroupDir {
    fn drop(&mut self) {
        for dir in self.made.iter().rev() {
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.lines() {
                    let _ = std::fs::write(self.home.join("cgroup.procs"), pid);
                }
            }
            if let Err(e) = std::fs::remove_dir(dir) {
                eprintln!("removing {}: {e}", dir.display());
            }
        }
    }
}

#[test]
fn agent_discovery_reads_the_container_id_of_a_moved_process() -> Result<()> {
    let _children = children::guard();
    let dir = own_dir("cgroup")?;
    let exe = linked(
        &dir,
        "goroutines",
        go::NEWEST,
        Variant::Default,
        "contained",
    )?;
    let id = format!(
        "{:032x}{:032x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos(),
        std::process::id()
    );
    // Made before the processes, so dropped after them: the directory is empty by then.
    let cgroup = CgroupDir::create(&format!("docker/{id}"))?;
    let inside = GoProcess::start(&exe, &[])?;
    let outside = GoProcess::start(&exe, &[])?;
    let mut discovery = Discovery::new(selection(&dir));
    let before = discovery.scan();
    assert_ne!(
        find(&before, inside.pid()).labels.container_id.as_deref(),
        Some(id.as_str())
    );

    cgroup.enter(inside.pid())?;
    let found = discovery.scan();
    let c = find(&found, inside.pid());
    assert_eq!(c.labels.container_id.as_deref(), Some(id.as_str()));
    assert!(c.cgroup.ends_with(&format!("/docker/{id}")), "{}", c.cgroup);
    assert_ne!(
        find(&found, outside.pid()).labels.container_id.as_deref(),
        Some(id.as_str())
    );

    // Selected by cgroup.
    let mut by_cgroup = Discovery::new(Selection {
        cgroup: vec![Glob::new("*/docker/*").unwrap()],
        ..selection(&dir)
    });
    assert_eq!(pids(&by_cgroup.scan()), BTreeSet::from([inside.pid()]));
    drop((inside, outside));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn agent_discovery_reads_an_executable_deleted_since_it_started() -> Result<()> {
    let _children = children::guard();
    let dir = own_dir("deleted")?;
    let exe = linked(&dir, "goroutines", go::OLDEST, Variant::Stripped, "gone")?;
    let p = GoProcess::start(&exe, &[])?;
    let id = exe_id(&exe);
    // The process runs on; its name in /proc ends in " (deleted)", its file only reachable
    // through /proc/PID/exe.
    std::fs::remove_file(&exe)?;
    let found = Discovery::new(selection(&dir)).scan();
    let c = find(&found, p.pid());
    assert_eq!(c.exe, exe);
    assert_eq!(c.exe_id, id);
    assert_eq!(c.labels.exe, "gone");
    assert!(is_release(&c.labels.go_version, go::OLDEST));
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
