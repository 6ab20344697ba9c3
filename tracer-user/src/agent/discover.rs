//! Which processes on the host are Go programs the agent should watch: one pass over `/proc`
//! per scan, each executable examined once (its build info only, never the whole pclntab),
//! labels read from the process's environment and cgroup.

use std::{
    collections::{HashMap, HashSet},
    ffi::OsStr,
    fs::File,
    os::{fd::AsFd, unix::ffi::OsStrExt},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use globset::GlobMatcher;
use rustix::fs::{AtFlags, Mode, OFlags};
use serde::Serialize;

use crate::binary::{BuildInfo, ElfInfo};

/// `PF_KTHREAD` in `/proc/PID/stat` field 9: a kernel thread, which has no executable.
const PF_KTHREAD: u32 = 0x0020_0000;

/// Which processes the agent watches.
#[derive(clap::Args, Serialize, Clone, Debug)]
#[command(next_help_heading = "Which processes")]
pub struct Selection {
    /// Watch only executables whose file name or full path matches (repeatable; none: every
    /// Go process).
    #[arg(long, value_name = "GLOB", value_parser = Glob::new)]
    pub include: Vec<Glob>,
    /// Never watch executables whose file name or full path matches (repeatable).
    #[arg(long, value_name = "GLOB", value_parser = Glob::new)]
    pub exclude: Vec<Glob>,
    /// Watch only programs whose Go main module matches, e.g. "github.com/acme/*"
    /// (repeatable).
    #[arg(long, value_name = "GLOB", value_parser = Glob::new)]
    pub module: Vec<Glob>,
    /// Never watch programs whose Go main module matches (repeatable).
    #[arg(long, value_name = "GLOB", value_parser = Glob::new)]
    pub exclude_module: Vec<Glob>,
    /// Watch only processes one of whose cgroup paths matches, e.g. "/docker/*" or
    /// "*kubepods*" (repeatable).
    #[arg(long, value_name = "GLOB", value_parser = Glob::new)]
    pub cgroup: Vec<Glob>,
    /// Skip processes younger than this (most short-lived commands end before it).
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = crate::units::parse_duration)]
    #[serde(serialize_with = "crate::units::serialize_duration")]
    pub min_age: Duration,
    /// Watch at most this many processes (the oldest).
    #[arg(long, value_name = "N", default_value = "100", value_parser = parse_max_targets)]
    pub max_targets: usize,
}

crate::detect::config_defaults!(Selection);

fn parse_max_targets(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("at least one target (0 would watch nothing)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a number of processes")),
    }
}

/// A glob as given (`*` also matches `/`), kept with its text for `--print-config`.
#[derive(Clone, Debug)]
pub struct Glob {
    text: String,
    matcher: GlobMatcher,
}

impl Glob {
    pub fn new(text: &str) -> Result<Glob, String> {
        let matcher = globset::Glob::new(text)
            .map_err(|e| format!("{text:?} is not a glob: {}", e.kind()))?
            .compile_matcher();
        Ok(Glob {
            text: text.to_string(),
            matcher,
        })
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.matcher.is_match(s)
    }
}

impl Serialize for Glob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// A process, as the agent keys it: PID reuse and exec make new targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TargetKey {
    pub pid: u32,
    /// Clock ticks after boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
}

impl TargetKey {
    /// "PID-STARTTIME", the id used in URLs and the history.
    pub fn id(&self) -> String {
        format!("{}-{}", self.pid, self.start_time)
    }

    pub fn parse(id: &str) -> Option<TargetKey> {
        let (pid, start) = id.split_once('-')?;
        let key = TargetKey {
            pid: pid.parse().ok()?,
            start_time: start.parse().ok()?,
        };
        // One spelling per key ("+12", "012" are not ids), so that ids compare as strings.
        (key.id() == id).then_some(key)
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Labels {
    pub service_name: String,
    /// The executable's file name.
    pub exe: String,
    /// The Go main module's path (the build info's `mod` line; its `path`, the main package,
    /// when there is no module line).
    pub module: Option<String>,
    /// As the build info says, e.g. "go1.27.1".
    pub go_version: String,
    pub pid: u32,
    pub host: String,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
}

impl Labels {
    /// The label set in a fixed order, absent ones left out: service_name, exe, module,
    /// go_version, pid, host, container_id, pod_uid.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![
            ("service_name", self.service_name.clone()),
            ("exe", self.exe.clone()),
        ];
        pairs.extend(self.module.clone().map(|m| ("module", m)));
        pairs.push(("go_version", self.go_version.clone()));
        pairs.push(("pid", self.pid.to_string()));
        pairs.push(("host", self.host.clone()));
        pairs.extend(self.container_id.clone().map(|c| ("container_id", c)));
        pairs.extend(self.pod_uid.clone().map(|p| ("pod_uid", p)));
        pairs
    }
}

#[derive(Clone, Debug)]
pub struct Candidate {
    pub key: TargetKey,
    pub labels: Labels,
    /// The executable's path as the process sees it (in its own mount namespace, without the
    /// " (deleted)" the kernel appends): for display only, never opened.
    pub exe: PathBuf,
    /// The executable's (device, inode): an `exec` keeps the pid and the start time, so this is
    /// what tells the program a process runs now from the one it ran before.
    pub exe_id: (u64, u64),
    /// Where the kernel put the process's stack (`/proc/PID/stat` field 28), placed anew at
    /// random by every `exec`: what tells a process that exec'd its own executable again (same
    /// key, same `exe_id`) from the program it was. Constant where address randomisation is
    /// off.
    pub exec_mark: u64,
    /// The process's cgroup (see [`CgroupInfo::path`]).
    pub cgroup: String,
}

/// What identifies an executable's contents without reading them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ExeStamp {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    size: i64,
}

impl ExeStamp {
    fn of(stat: &rustix::fs::Stat) -> ExeStamp {
        ExeStamp {
            dev: stat.st_dev,
            ino: stat.st_ino,
            mtime: (stat.st_mtime, stat.st_mtime_nsec as i64),
            size: stat.st_size,
        }
    }
}

/// What the build info of a Go executable says.
#[derive(Debug)]
struct GoExe {
    version: String,
    module: Option<String>,
}

pub struct Discovery {
    selection: Selection,
    host: String,
    ticks_per_second: u64,
    /// Per executable: its build info, `None` when it is not a Go program gotrace can read.
    exes: HashMap<ExeStamp, Option<Arc<GoExe>>>,
    /// What the last scan learnt of each process old enough to look at.
    processes: HashMap<TargetKey, Seen>,
    over_limit: usize,
    /// How long after the last scan its youngest skipped Go process is old enough.
    matures_in: Option<Duration>,
}

/// One process as a scan left it: what the next needs not read again while the process runs
/// the same executable.
struct Seen {
    stamp: ExeStamp,
    /// See [`Candidate::exec_mark`]: an exec of the same executable may bring another
    /// environment.
    exec_mark: u64,
    exe: PathBuf,
    /// The service name its environment gives, once read (the environment a program started
    /// with does not change).
    service: Option<Option<String>>,
}

impl Discovery {
    pub fn new(selection: Selection) -> Discovery {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        Discovery {
            selection,
            host,
            ticks_per_second: procfs::ticks_per_second().max(1),
            exes: HashMap::new(),
            processes: HashMap::new(),
            over_limit: 0,
            matures_in: None,
        }
    }

    /// Only the processes started since the last look: a listing of /proc, then the usual
    /// reading of each new one. Cheap enough to run every second (a full [`Discovery::scan`]
    /// reads every process), so that a program is found about when it is old enough rather
    /// than a scan interval later. Its candidates are not capped by `--max-targets`.
    pub fn scan_new(&mut self) -> Vec<Candidate> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let uptime = uptime();
        let me = std::process::id();
        let known: HashSet<u32> = self.processes.keys().map(|k| k.pid).collect();
        let matured = self.matures_in;
        let (mut previous, mut seen_exes) = (HashMap::new(), HashSet::new());
        let mut found: Vec<Candidate> = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| *pid != me && !known.contains(pid))
            .filter_map(|pid| self.look_at(pid, uptime, &mut previous, &mut seen_exes))
            .collect();
        if let (Some(m), Some(before)) = (self.matures_in, matured) {
            self.matures_in = Some(m.min(before));
        }
        found.sort_by_key(|c| c.key);
        found
    }

    /// How many selected processes the last scan left out for `--max-targets`.
    pub fn over_limit(&self) -> usize {
        self.over_limit
    }

    /// When a Go process the last scan skipped as too young (`--min-age`) becomes old
    /// enough, from that scan: a scan then finds it without waiting for the next interval.
    pub fn matures_in(&self) -> Option<Duration> {
        self.matures_in
    }

    /// One pass over /proc: the selected Go processes, oldest first, at most max-targets
    /// (the ones left out counted: [`Discovery::over_limit`]).
    pub fn scan(&mut self) -> Vec<Candidate> {
        let entries = match std::fs::read_dir("/proc") {
            Ok(entries) => entries,
            Err(e) => {
                log::warn!("cannot list /proc ({e}): no process discovered this time");
                return Vec::new();
            }
        };
        let uptime = uptime();
        self.matures_in = None;
        let me = std::process::id();
        let mut seen_exes = HashSet::new();
        // Rebuilt by every scan from what it sees: exited processes fall out.
        let mut previous = std::mem::take(&mut self.processes);
        let mut found: Vec<Candidate> = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| pid != me)
            .filter_map(|pid| {
                // Gone meanwhile, a kernel thread, a zombie, too young, not Go, not selected:
                // all mean "not a candidate" alike.
                self.look_at(pid, uptime, &mut previous, &mut seen_exes)
            })
            .collect();
        // Bounded: executables no process runs any more (replaced binaries) go.
        self.exes.retain(|stamp, _| seen_exes.contains(stamp));
        found.sort_by_key(|c| c.key);
        let max = self.selection.max_targets;
        self.over_limit = found.len().saturating_sub(max);
        found.truncate(max);
        found
    }

    fn look_at(
        &mut self,
        pid: u32,
        uptime: Duration,
        previous: &mut HashMap<TargetKey, Seen>,
        seen_exes: &mut HashSet<ExeStamp>,
    ) -> Option<Candidate> {
        // Every later read goes through this directory: a pid reused meanwhile answers ESRCH
        // instead of another process's files.
        let dir = rustix::fs::open(
            format!("/proc/{pid}"),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let stat = Stat::parse(&read_at(&dir, "stat")?)?;
        if stat.flags & PF_KTHREAD != 0 || matches!(stat.state, b'Z' | b'X') {
            return None;
        }
        let key = TargetKey {
            pid,
            start_time: stat.start_time,
        };
        // A start time is rounded down to its clock tick: an age is never short of the truth.
        let started =
            Duration::from_secs_f64(stat.start_time as f64 / self.ticks_per_second as f64);
        // Too young is decided once it is known to be a Go program: only those are worth a
        // scan as soon as they are old enough.
        let young = self
            .selection
            .min_age
            .checked_sub(uptime.saturating_sub(started))
            .filter(|left| !left.is_zero());
        // The magic link reaches the very file the process runs, wherever it lives and even
        // deleted; no path the process could swap is followed.
        let stamp = ExeStamp::of(&rustix::fs::statat(&dir, "exe", AtFlags::empty()).ok()?);
        let seen = match previous.remove(&key) {
            // The same program as last time: its name is known.
            Some(seen) if seen.stamp == stamp && seen.exec_mark == stat.start_stack => seen,
            _ => {
                let link = rustix::fs::readlinkat(&dir, "exe", Vec::new()).ok()?;
                let link = link.as_bytes();
                Seen {
                    stamp,
                    exec_mark: stat.start_stack,
                    exe: PathBuf::from(OsStr::from_bytes(
                        link.strip_suffix(b" (deleted)").unwrap_or(link),
                    )),
                    service: None,
                }
            }
        };
        let seen = self.processes.entry(key).or_insert(seen);
        let exe = seen.exe.clone();
        let name = exe
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let full = exe.to_string_lossy();
        let selection = &self.selection;
        let path_matches =
            |globs: &[Glob]| globs.iter().any(|g| g.is_match(&name) || g.is_match(&full));
        if (!selection.include.is_empty() && !path_matches(&selection.include))
            || path_matches(&selection.exclude)
        {
            return None;
        }
        let (stamp, go) = match self.exes.get(&stamp) {
            Some(known) => (stamp, known.clone()),
            None => {
                let (opened, go) = examine(&dir, &full)?;
                // An exec between the stat and the open: the file opened is the one to key
                // (the next scan sees the new stamp and reads the new name).
                self.exes.insert(opened, go.clone());
                (opened, go)
            }
        };
        seen_exes.insert(stamp);
        let go = go?;
        if let Some(left) = young {
            self.matures_in = Some(self.matures_in.map_or(left, |m| m.min(left)));
            return None;
        }
        if !selection.module.is_empty()
            && !go
                .module
                .as_deref()
                .is_some_and(|m| selection.module.iter().any(|g| g.is_match(m)))
        {
            return None;
        }
        if let Some(m) = &go.module {
            if selection.exclude_module.iter().any(|g| g.is_match(m)) {
                return None;
            }
        }
        // Re-read every scan: a process can be moved to another cgroup at any time.
        let cgroup = parse_cgroup(&String::from_utf8_lossy(&read_at(&dir, "cgroup")?));
        if !selection.cgroup.is_empty()
            && !cgroup
                .paths
                .iter()
                .any(|p| selection.cgroup.iter().any(|g| g.is_match(p)))
        {
            return None;
        }
        let from_env = seen
            .service
            .get_or_insert_with(|| {
                read_at(&dir, "environ").and_then(|env| service_from_environ(&env))
            })
            .clone();
        let service_name = from_env
            .or_else(|| go.module.as_deref().and_then(module_service_name))
            .unwrap_or_else(|| name.clone());
        Some(Candidate {
            key,
            labels: Labels {
                service_name,
                exe: name,
                module: go.module.clone(),
                go_version: go.version.clone(),
                pid,
                host: self.host.clone(),
                container_id: cgroup.container_id,
                pod_uid: cgroup.pod_uid,
            },
            exe,
            exe_id: (stamp.dev, stamp.ino),
            exec_mark: stat.start_stack,
            cgroup: cgroup.path,
        })
    }
}

/// The fields of `/proc/PID/stat` a scan needs.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    state: u8,
    flags: u32,
    start_time: u64,
    start_stack: u64,
}

impl Stat {
    /// Parsed here rather than by procfs, which parses all 52 fields: the scan reads this file
    /// of every process on the host every few seconds.
    fn parse(text: &[u8]) -> Option<Stat> {
        // The command name, in parentheses, may hold anything, spaces and ')' included: the
        // fields start after the last ')'. Field 3 (the state) comes first.
        let close = text.iter().rposition(|&b| b == b')')?;
        let mut fields = text[close + 1..]
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty());
        let mut field = |n: usize| -> Option<&[u8]> { fields.nth(n) };
        let state = *field(0)?.first()?;
        let number = |f: &[u8]| std::str::from_utf8(f).ok()?.parse().ok();
        let flags = number(field(5)?)?;
        let start_time = number(field(12)?)?;
        let start_stack = number(field(5)?)?;
        Some(Stat {
            state,
            flags: u32::try_from(flags).ok()?,
            start_time,
            start_stack,
        })
    }
}

/// Time since boot on the clock start times count on, to the nanosecond: `/proc/uptime` has
/// the start times' own 10 ms steps, which make a process started in the current step look
/// no age at all.
fn uptime() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A small file of `/proc/PID`, whole: read by plain reads (`read_to_end` would stat and seek
/// the file first, two more system calls for each process of every scan).
fn read_at(dir: &impl AsFd, name: &str) -> Option<Vec<u8>> {
    let fd = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match rustix::io::read(&fd, &mut chunk) {
            Ok(0) => return Some(out),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
    }
}

/// Opens the process's executable through `/proc/PID/exe` and reads its build info: the
/// stamp of the file opened, and what it says when it is a Go program gotrace can read.
fn examine(dir: &impl AsFd, display: &str) -> Option<(ExeStamp, Option<Arc<GoExe>>)> {
    // Non-blocking: a FIFO is refused below rather than waited on.
    let fd = rustix::fs::openat(
        dir,
        "exe",
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let stat = rustix::fs::fstat(&fd).ok()?;
    let stamp = ExeStamp::of(&stat);
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return Some((stamp, None));
    }
    // SAFETY: as in `GoBinary::open`: a read-only private map of the inode the process runs,
    // which a replaced binary keeps alive; only the pages of the ELF headers and of the build
    // info are touched.
    let map = match unsafe { memmap2::Mmap::map(&File::from(fd)) } {
        Ok(map) => map,
        Err(e) => {
            log::debug!("{display}: cannot map it ({e}); not watched");
            return Some((stamp, None));
        }
    };
    let go = match go_buildinfo(&map, display) {
        Ok(info) => Some(Arc::new(GoExe {
            version: info.version_string,
            module: info
                .main_module
                .or(info.path)
                .filter(|m| m != "command-line-arguments"),
        })),
        Err(reason) => {
            log::debug!("{display}: {reason}; not watched");
            None
        }
    };
    Some((stamp, go))
}

/// The build info alone: the ELF section table, then the `.go.buildinfo` section. Only a file
/// without section headers (`sstrip`) has its data searched for the magic, as `go version`
/// does; a file with sections but no `.go.buildinfo` is not a Go 1.18+ program.
fn go_buildinfo(data: &[u8], display: &str) -> Result<BuildInfo, String> {
    let elf = ElfInfo::parse(data, display).map_err(|e| e.to_string())?;
    let section = match elf.section(".go.buildinfo") {
        Some(s) => Some(
            elf.section_data(data, s)
                .ok_or("its .go.buildinfo section lies past its end")?,
        ),
        None if !elf.sections.is_empty() => return Err("not a Go program".into()),
        None => None,
    };
    BuildInfo::find(data, section).map_err(|e| e.to_string())
}

/// `OTEL_SERVICE_NAME`, else `PYROSCOPE_APPLICATION_NAME`, from a `/proc/PID/environ` blob.
fn service_from_environ(environ: &[u8]) -> Option<String> {
    let var = |name: &[u8]| {
        environ.split(|&b| b == 0).find_map(|kv| {
            let value = kv.strip_prefix(name)?.strip_prefix(b"=")?;
            (!value.is_empty()).then(|| String::from_utf8_lossy(value).into_owned())
        })
    };
    var(b"OTEL_SERVICE_NAME").or_else(|| var(b"PYROSCOPE_APPLICATION_NAME"))
}

/// The module path's last element, skipping a major-version suffix: `github.com/acme/pay/v2`
/// is the service "pay".
fn module_service_name(module: &str) -> Option<String> {
    let mut elems = module.rsplit('/').filter(|e| !e.is_empty());
    let last = elems.next()?;
    let is_major = |e: &str| {
        e.strip_prefix('v')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    Some(
        if is_major(last) {
            elems.next().unwrap_or(last)
        } else {
            last
        }
        .to_string(),
    )
}

/// What `/proc/PID/cgroup` says of a process's container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupInfo {
    /// The process's cgroup: the unified (v2) path unless it is the root, else the v1 memory
    /// controller's (where its memory limit is), else any other v1 hierarchy's that is not
    /// the root, else "/".
    pub path: String,
    /// Every hierarchy's path, the unified one first.
    pub paths: Vec<String>,
    /// The container runtime's 64-hex container id (Docker, containerd/CRI, CRI-O, Podman).
    pub container_id: Option<String>,
    /// The Kubernetes pod UID, with dashes.
    pub pod_uid: Option<String>,
}

/// Parses `/proc/PID/cgroup`: v1 lines `N:controllers:/path`, the v2 line `0::/path`. The
/// innermost path element that names a container wins (Docker in Docker names both).
pub fn parse_cgroup(text: &str) -> CgroupInfo {
    let mut unified = Vec::new();
    let mut v1 = Vec::new();
    let mut memory = None;
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            unified.push(path.to_string());
        } else {
            if controllers.split(',').any(|c| c == "memory") {
                memory = Some(path.to_string());
            }
            v1.push(path.to_string());
        }
    }
    let not_root = |p: &&String| *p != "/";
    let path = unified
        .iter()
        .find(not_root)
        .or(memory.as_ref().filter(not_root))
        .or(v1.iter().find(not_root))
        .cloned()
        .unwrap_or_else(|| "/".into());
    unified.extend(v1);
    let paths = unified;
    let innermost =
        |of: fn(&str) -> Option<String>| paths.iter().find_map(|p| p.rsplit('/').find_map(of));
    CgroupInfo {
        path,
        container_id: innermost(container_id_of),
        pod_uid: innermost(pod_uid_of),
        paths,
    }
}

/// A container id from one path element: `<64hex>` (cgroupfs drivers: `/docker/ID`,
/// `/kubepods/.../ID`), or `docker-ID.scope`, `cri-containerd-ID.scope`, `crio-ID.scope`,
/// `libpod-ID.scope` (systemd drivers; the `.scope` is absent under cgroupfs).
fn container_id_of(elem: &str) -> Option<String> {
    let elem = elem.strip_suffix(".scope").unwrap_or(elem);
    let id = ["docker-", "cri-containerd-", "crio-", "libpod-"]
        .iter()
        .find_map(|p| elem.strip_prefix(p))
        .unwrap_or(elem);
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

/// A pod UID from one path element: `pod<uid>` (cgroupfs) or `kubepods-<qos>-pod<uid>.slice`
/// (systemd, which writes the UID's dashes as underscores).
fn pod_uid_of(elem: &str) -> Option<String> {
    let elem = elem.strip_suffix(".slice").unwrap_or(elem);
    let uid = match elem.strip_prefix("pod") {
        Some(uid) => uid,
        None => &elem[elem.rfind("-pod")? + "-pod".len()..],
    };
    let uid = uid.replace('_', "-").to_ascii_lowercase();
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    let groups: Vec<&str> = uid.split('-').collect();
    // A UUID, or the 32-hex hash kubelet gives static pods.
    let uuid = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]) && groups.iter().all(|g| hex(g));
    (uuid || (uid.len() == 32 && hex(&uid))).then_some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4c1ad3c5d4f6b7e8a9f0e1d2c3b4a5968778695a4b3c2d1e0f9e8d7c6b5a4938";
    const ID2: &str = "9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9";

    fn v2(path: &str) -> CgroupInfo {
        parse_cgroup(&format!("0::{path}\n"))
    }

    #[test]
    fn docker_cgroupfs_v1_and_systemd_v2() {
        let v1 = format!(
            "12:memory:/docker/{ID}\n11:cpu,cpuacct:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/\n"
        );
        let info = parse_cgroup(&v1);
        assert_eq!(info.container_id.as_deref(), Some(ID));
        assert_eq!(info.path, format!("/docker/{ID}"));
        assert_eq!(info.paths[0], "/", "the unified line comes first");
        assert_eq!(info.pod_uid, None);
        // On a hybrid host the memory controller's path is the cgroup, whatever the order.
        let info = parse_cgroup(&format!(
            "1:name=systemd:/system.slice/docker-{ID}.scope\n4:memory:/docker/{ID}\n0::/\n"
        ));
        assert_eq!(info.path, format!("/docker/{ID}"));
        let info = v2(&format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(info.container_id.as_deref(), Some(ID));
        assert_eq!(info.path, format!("/system.slice/docker-{ID}.scope"));
    }

    #[test]
    fn docker_in_docker_names_the_inner_container() {
        let info = v2(&format!("/docker/{ID}/docker/{ID2}"));
        assert_eq!(info.container_id.as_deref(), Some(ID2));
    }

    #[test]
    fn kubernetes_cgroupfs_and_systemd_paths() {
        // containerd and dockershim with the cgroupfs driver, v1.
        let info = parse_cgroup(&format!(
            "4:memory:/kubepods/burstable/pod0a1b2c3d-4e5f-6789-abcd-ef0123456789/{ID}\n"
        ));
        assert_eq!(info.container_id.as_deref(), Some(ID));
        assert_eq!(
            info.pod_uid.as_deref(),
            Some("0a1b2c3d-4e5f-6789-abcd-ef0123456789")
        );
        // containerd with the systemd driver, v2: the UID's dashes written as underscores.
        let info = v2(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice/cri-containerd-{ID}.scope"
        ));
        assert_eq!(info.container_id.as_deref(), Some(ID));
        assert_eq!(
            info.pod_uid.as_deref(),
            Some("0a1b2c3d-4e5f-6789-abcd-ef0123456789")
        );
        // Guaranteed QoS pods sit right under kubepods.slice; CRI-O's scope.
        let info = v2(&format!(
            "/kubepods.slice/kubepods-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice/crio-{ID}.scope"
        ));
        assert_eq!(info.container_id.as_deref(), Some(ID));
        assert_eq!(
            info.pod_uid.as_deref(),
            Some("0a1b2c3d-4e5f-6789-abcd-ef0123456789")
        );
        // A static pod's UID is the 32-hex hash of its manifest.
        let info = v2(&format!(
            "/kubepods/besteffort/pod6d5d8e4a5c1d3f0b9a8e7d6c5b4a3928/{ID}"
        ));
        assert_eq!(
            info.pod_uid.as_deref(),
            Some("6d5d8e4a5c1d3f0b9a8e7d6c5b4a3928")
        );
    }

    #[test]
    fn crio_conmon_is_not_the_container() {
        let info = v2(&format!(
            "/kubepods.slice/kubepods-besteffort.slice/crio-conmon-{ID}.scope"
        ));
        assert_eq!(info.container_id, None);
    }

    #[test]
    fn podman_rootful_rootless_and_cgroupfs() {
        let info = v2(&format!("/machine.slice/libpod-{ID}.scope"));
        assert_eq!(info.container_id.as_deref(), Some(ID));
        // Rootless, the container's processes in a child of the scope.
        let info = v2(&format!(
            "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
        ));
        assert_eq!(info.container_id.as_deref(), Some(ID));
        let info = parse_cgroup(&format!("5:memory:/libpod_parent/libpod-{ID}\n"));
        assert_eq!(info.container_id.as_deref(), Some(ID));
        let info = v2(&format!("/machine.slice/libpod-conmon-{ID}.scope"));
        assert_eq!(info.container_id, None);
    }

    #[test]
    fn no_container_on_a_host_path() {
        let info = parse_cgroup(
            "4:memory:/process_api/3879bf846639e613fc57ab86e8a2f547\n1:name=systemd:/\n0::/\n",
        );
        assert_eq!(info.container_id, None);
        assert_eq!(info.pod_uid, None);
        assert_eq!(info.path, "/process_api/3879bf846639e613fc57ab86e8a2f547");
        let info = v2("/user.slice/user-1000.slice/session-2.scope");
        assert_eq!((info.container_id, info.pod_uid), (None, None));
        // kubepods itself is no pod.
        assert_eq!(v2("/kubepods.slice/kubepods-burstable.slice").pod_uid, None);
        assert_eq!(parse_cgroup("").path, "/");
    }

    #[test]
    fn stat_fields_after_any_command_name() {
        let line =
            b"4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 120 0 0 0 3 1 0 0 20 0 9 0 77123 1 2 3 4 5 140736392668624 7\n";
        assert_eq!(
            Stat::parse(line),
            Some(Stat {
                state: b'S',
                flags: 4194560,
                start_time: 77123,
                start_stack: 140736392668624
            })
        );
        let own = std::fs::read("/proc/self/stat").unwrap();
        let procfs = procfs::process::Process::myself().unwrap().stat().unwrap();
        let mine = Stat::parse(&own).unwrap();
        // Not the state: this test process runs (R) or waits (S) from one read to the next.
        assert_eq!(
            (mine.flags, mine.start_time, mine.start_stack),
            (
                procfs.flags,
                procfs.starttime,
                procfs.startstack
            )
        );
        assert_eq!(Stat::parse(b"1 (x) S 1"), None);
    }

    #[test]
    fn target_ids_round_trip_in_one_spelling() {
        let key = TargetKey {
            pid: 4242,
            start_time: 123456789,
        };
        assert_eq!(key.id(), "4242-123456789");
        assert_eq!(TargetKey::parse(&key.id()), Some(key));
        for bad in [
            "4242", "4242-", "-1", "+4242-1", "04242-1", "4242-1-2", "a-1", "",
        ] {
            assert_eq!(TargetKey::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn labels_in_their_fixed_order() {
        let mut labels = Labels {
            service_name: "pay".into(),
            exe: "server".into(),
            module: Some("github.com/acme/pay".into()),
            go_version: "go1.27.1".into(),
            pid: 7,
            host: "h".into(),
            container_id: Some(ID.into()),
            pod_uid: Some("u".into()),
        };
        let names = |l: &Labels| l.pairs().into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            names(&labels),
            [
                "service_name",
                "exe",
                "module",
                "go_version",
                "pid",
                "host",
                "container_id",
                "pod_uid"
            ]
        );
        labels.module = None;
        labels.container_id = None;
        labels.pod_uid = None;
        assert_eq!(
            labels.pairs(),
            [
                ("service_name", "pay".to_string()),
                ("exe", "server".into()),
                ("go_version", "go1.27.1".into()),
                ("pid", "7".into()),
                ("host", "h".into())
            ]
        );
    }

    #[test]
    fn service_names() {
        let env = b"PATH=/bin\0PYROSCOPE_APPLICATION_NAME=pyro\0OTEL_SERVICE_NAME=otel\0";
        assert_eq!(service_from_environ(env).as_deref(), Some("otel"));
        let env = b"OTEL_SERVICE_NAME=\0PYROSCOPE_APPLICATION_NAME=pyro\0";
        assert_eq!(service_from_environ(env).as_deref(), Some("pyro"));
        assert_eq!(service_from_environ(b"XOTEL_SERVICE_NAME=x\0"), None);
        assert_eq!(
            module_service_name("github.com/acme/pay").as_deref(),
            Some("pay")
        );
        assert_eq!(
            module_service_name("github.com/acme/pay/v2").as_deref(),
            Some("pay")
        );
        assert_eq!(module_service_name("v2").as_deref(), Some("v2"));
        assert_eq!(
            module_service_name("example.com/vault").as_deref(),
            Some("vault")
        );
    }

    #[test]
    fn flags_as_the_config_file_names_them() {
        use clap::{Args, FromArgMatches};
        let cmd = Selection::augment_args(clap::Command::new("t").no_binary_name(true));
        let args = [
            "--include",
            "api-*",
            "--include",
            "/srv/*",
            "--exclude",
            "*-debug",
            "--module",
            "github.com/acme/*",
            "--exclude-module",
            "github.com/acme/tools",
            "--cgroup",
            "*kubepods*",
            "--min-age",
            "1w",
            "--max-targets",
            "7",
        ];
        let s = Selection::from_arg_matches(&cmd.clone().get_matches_from(args)).unwrap();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "include": ["api-*", "/srv/*"], "exclude": ["*-debug"],
                "module": ["github.com/acme/*"], "exclude_module": ["github.com/acme/tools"],
                "cgroup": ["*kubepods*"], "min_age": "7d", "max_targets": 7,
            })
        );
        // What --print-config shows reads back the same.
        assert_eq!(crate::units::parse_duration("7d"), Ok(s.min_age));
        for bad in [
            &["--include", "a["][..],
            &["--max-targets", "0"],
            &["--min-age", "0s"],
        ] {
            assert!(cmd.clone().try_get_matches_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_and_defaults() {
        let s = Selection::default();
        assert_eq!((s.min_age, s.max_targets), (Duration::from_secs(1), 100));
        assert!(s.include.is_empty());
        let g = Glob::new("github.com/acme/*").unwrap();
        assert!(g.is_match("github.com/acme/pay/v2"));
        assert!(!g.is_match("github.com/other/pay"));
        assert!(Glob::new("a[").is_err());
        assert!(parse_max_targets("0").is_err());
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["min_age"], "1s");
        assert_eq!(json["max_targets"], 100);
    }
}
