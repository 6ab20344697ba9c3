//! The agent's local history: every interval (and before the OOM killer) each target's
//! snapshot — the heap and goroutine profiles and report.json — kept on disk across restarts,
//! capped by age and size, and read back by `gotrace history`.
//!
//! Layout, under `--state-dir`:
//!
//! ```text
//! history/<PID-STARTTIME>/target.json                  the target's labels, when first seen
//! history/<PID-STARTTIME>/<RFC 3339 time>/meta.json    kind, reason, and each file's size
//! history/<PID-STARTTIME>/<RFC 3339 time>/report.json  (and heap.pb.gz, goroutine.pb.gz)
//! ```
//!
//! A snapshot is written whole into a hidden temporary directory (`.tmp-...`), `meta.json`
//! last, then renamed into place: a reader, or the agent restarted after `kill -9`, sees all of
//! it or nothing. What a crash can still leave — a temporary directory, or after a power loss
//! files the rename made visible before their data reached the disk — is told apart by
//! `meta.json` (missing, unparseable, or naming a file of another size), skipped with one
//! warning and removed when the store is next opened for writing. Checking sizes instead of
//! parsing every report keeps opening a week of history fast.
//!
//! The disk usage is counted once when the store opens, then kept up to date as snapshots are
//! added and removed: no walk of the directory per record.

use std::{
    collections::{BTreeMap, HashMap},
    ffi::{OsStr, OsString},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    export::{self, GOROUTINE_PPROF, HEAP_PPROF, REPORT_JSON},
    files::OutDir,
    pprof,
    snapshot::{Report, Snapshot},
    units::{parse_duration, parse_size, serialize_duration, serialize_size},
};

/// `--state-dir`'s default, for `gotrace history` too.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/gotrace";

/// The history's flags (top-level keys of the agent's TOML file).
#[derive(clap::Args, Serialize, Clone, Debug)]
#[command(next_help_heading = "History")]
pub struct HistoryConfig {
    /// Directory of the agent's state: the history is kept in DIR/history, one directory per
    /// target. Must belong to root (or you) and be writable by nobody else.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,

    /// Snapshots older than this are removed.
    #[arg(long, value_name = "DUR", default_value = "7d", value_parser = parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub retention: Duration,

    /// The most disk the history may use: the oldest snapshots (of any target) are removed
    /// first to stay within it.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    #[serde(serialize_with = "serialize_size")]
    pub max_disk: u64,

    /// Keep no history on disk (profiles are still served and pushed).
    #[arg(long)]
    pub no_history: bool,
}

crate::detect::config_defaults!(HistoryConfig);

/// Why a snapshot was taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "reason", rename_all = "kebab-case")]
pub enum Kind {
    /// Every `--interval`.
    Interval,
    /// Taken because memory neared a limit; the reason as one line.
    Pressure(String),
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Interval => f.write_str("interval"),
            Kind::Pressure(why) => write!(f, "pressure: {why}"),
        }
    }
}

/// The files of one stored snapshot: the outputs of the same names, report.json last.
const STORED: [&str; 3] = [HEAP_PPROF, GOROUTINE_PPROF, REPORT_JSON];
const META: &str = "meta.json";
const TARGET: &str = "target.json";
const HISTORY: &str = "history";
const TMP_PREFIX: &str = ".tmp-";
/// Held locked by the agent that writes the history: a second one would remove what the first
/// is writing, and both would count the disk wrong.
const LOCK: &str = ".lock";

/// `meta.json`: what the entry is, and the size of each of its files (a torn file has
/// another size).
#[derive(Serialize, Deserialize)]
struct Meta {
    #[serde(flatten)]
    kind: Kind,
    subtitle: String,
    files: BTreeMap<String, u64>,
}

/// `target.json`.
#[derive(Serialize, Deserialize)]
struct TargetMeta {
    id: String,
    labels: BTreeMap<String, String>,
}

/// One stored snapshot, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// Its name in `gotrace history` (the time it was taken, RFC 3339 in UTC).
    pub name: String,
    pub time: SystemTime,
    pub kind: Kind,
    /// Its bytes on disk.
    pub bytes: u64,
}

/// One target with stored snapshots.
#[derive(Clone, Debug)]
pub struct StoredTarget {
    /// `PID-STARTTIME`.
    pub id: String,
    /// Empty when its target.json was lost.
    pub labels: BTreeMap<String, String>,
    /// Oldest first.
    pub snapshots: Vec<StoredSnapshot>,
}

/// The write side, owned by the agent.
pub struct History {
    config: HistoryConfig,
    /// `None` with `--no-history`.
    root: Option<OutDir>,
    /// Locked while this store is open.
    _lock: Option<std::fs::File>,
    /// Every stored snapshot, oldest first (across targets, for the size cap): its bytes.
    entries: BTreeMap<(SystemTime, String, String), u64>,
    /// Per target directory: its snapshots, and the bytes of its target.json.
    targets: HashMap<String, (usize, u64)>,
    usage: u64,
}

impl History {
    /// Creates or checks the directory root-safely, removes what a crash left half-written,
    /// applies the caps.
    pub fn open(config: &HistoryConfig) -> Result<History> {
        let mut history = History {
            config: config.clone(),
            root: None,
            _lock: None,
            entries: BTreeMap::new(),
            targets: HashMap::new(),
            usage: 0,
        };
        if config.no_history {
            return Ok(history);
        }
        let root = OutDir::open(&config.state_dir.join(HISTORY)).map_err(|e| {
            Error::Other(format!(
                "the history's state directory: {e} (choose another with --state-dir DIR, or run without history: --no-history)"
            ))
        })?;
        let lock = root.open_file(LOCK.as_ref())?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| {
                Error::Other(format!(
                    "another gotrace agent keeps its history in {}: give this one another --state-dir",
                    root.path().display()
                ))
            },
        )?;
        for name in root.names()? {
            if name == LOCK {
                continue;
            }
            let dir = match name.to_str().filter(|id| valid_id(id)) {
                Some(_) => root.subdir(&name, false),
                None => Err(Error::Other("not a target's directory".into())),
            };
            let dir = match dir {
                Ok(dir) => dir,
                // Not the agent's: left alone.
                Err(e) => {
                    let path = root.path().join(&name);
                    log::warn!("history: skipping {}: {e}", path.display());
                    continue;
                }
            };
            let id = name.to_string_lossy().into_owned();
            let scan = scan_target(&dir)?;
            for (torn, why) in &scan.torn {
                warn_removed(&dir, torn, why);
            }
            // No other agent writes here (the lock): what is temporary is a crash's.
            for tmp in &scan.temporary {
                warn_removed(&dir, tmp, "a temporary entry left by a crash");
            }
            let target_bytes = dir.stat(TARGET.as_ref()).map_or(0, |st| disk_bytes(&st));
            history.usage += target_bytes;
            history
                .targets
                .insert(id.clone(), (scan.snapshots.len(), target_bytes));
            for s in scan.snapshots {
                history.usage += s.bytes;
                history
                    .entries
                    .insert((s.time, id.clone(), s.name), s.bytes);
            }
        }
        history.root = Some(root);
        history._lock = Some(lock);
        history.enforce(SystemTime::now());
        Ok(history)
    }

    /// Records one snapshot of one target, taken now; see [`History::record_at`].
    pub fn record(
        &mut self,
        target_id: &str,
        labels: &[(&'static str, String)],
        snapshot: &Snapshot,
        kind: Kind,
    ) -> Result<()> {
        self.record_at(target_id, labels, snapshot, kind, SystemTime::now())
    }

    /// Records one snapshot of one target, taken at `time` (which names it). `target_id` is
    /// "PID-STARTTIME"; `labels` are stored with the target the first time it is seen. Atomic:
    /// a reader (or a restart after kill -9) sees the whole snapshot or none of it.
    pub fn record_at(
        &mut self,
        target_id: &str,
        labels: &[(&'static str, String)],
        snapshot: &Snapshot,
        kind: Kind,
        time: SystemTime,
    ) -> Result<()> {
        let Some(root) = &self.root else {
            return Ok(());
        };
        if !valid_id(target_id) {
            return Err(Error::Other(format!(
                "{target_id:?} is not a target id (PID-STARTTIME)"
            )));
        }
        let dir = root.subdir(target_id.as_ref(), true)?;
        if !self.targets.contains_key(target_id) {
            let bytes = match dir.stat(TARGET.as_ref()) {
                // Seen by an earlier run of the agent: its labels stay.
                Some(st) => disk_bytes(&st),
                None => {
                    let meta = TargetMeta {
                        id: target_id.to_string(),
                        labels: labels
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.clone()))
                            .collect(),
                    };
                    dir.write(TARGET.as_ref(), &to_json(&meta))?;
                    dir.stat(TARGET.as_ref()).map_or(0, |st| disk_bytes(&st))
                }
            };
            self.usage += bytes;
            self.targets.insert(target_id.to_string(), (0, bytes));
        }

        let tmp = temp_name(&dir)?;
        let written = write_entry(&dir, &tmp, snapshot, kind);
        let bytes = match written {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = dir.remove_all(&tmp);
                return Err(e);
            }
        };
        // Two snapshots in one millisecond (an interval's and a pressure one): the later one
        // is named a millisecond on.
        let mut time = time;
        let name = loop {
            let name = entry_name(time);
            match dir.rename(&tmp, name.as_ref()) {
                Ok(()) => break name,
                Err(_) if dir.stat(name.as_ref()).is_some() => time += Duration::from_millis(1),
                Err(e) => {
                    let _ = dir.remove_all(&tmp);
                    return Err(e);
                }
            }
        };
        self.usage += bytes;
        self.entries.insert(
            (
                parse_name(&name).unwrap_or(time),
                target_id.to_string(),
                name,
            ),
            bytes,
        );
        if let Some(t) = self.targets.get_mut(target_id) {
            t.0 += 1;
        }
        self.enforce(SystemTime::now());
        Ok(())
    }

    /// Bytes on disk now (what --max-disk caps): every stored file's allocated blocks.
    pub fn disk_usage(&self) -> u64 {
        self.usage
    }

    /// Removes the snapshots older than `--retention`, then the oldest ones until the history
    /// fits `--max-disk`.
    fn enforce(&mut self, now: SystemTime) {
        let cutoff = now.checked_sub(self.config.retention);
        while let Some(((time, target, name), _)) = self.entries.first_key_value() {
            let old = cutoff.is_some_and(|c| *time < c);
            if !old && self.usage <= self.config.max_disk {
                break;
            }
            let key = (*time, target.clone(), name.clone());
            if !old && self.entries.len() == 1 {
                log::warn!(
                    "history: a snapshot of {target} takes {} on disk, more than --max-disk {}: it is not kept (raise --max-disk)",
                    crate::units::human_bytes(self.usage),
                    crate::units::human_bytes(self.config.max_disk)
                );
            }
            self.remove(&key);
        }
    }

    /// Removes one snapshot, and its target's directory when it was the last.
    fn remove(&mut self, key: &(SystemTime, String, String)) {
        let bytes = self.entries.remove(key).unwrap_or(0);
        self.usage -= bytes;
        let (_, target, name) = key;
        let Some(root) = &self.root else { return };
        let removed = root
            .subdir(target.as_ref(), false)
            .and_then(|dir| dir.remove_all(name.as_ref()));
        if let Err(e) = removed {
            // Forgotten all the same: retrying on every record would not make it removable.
            log::warn!("history: removing an old snapshot: {e}");
        }
        let left = self.targets.get_mut(target).map(|t| {
            t.0 = t.0.saturating_sub(1);
            *t
        });
        if let Some((0, target_bytes)) = left {
            self.targets.remove(target);
            self.usage -= target_bytes;
            if let Err(e) = root.remove_all(target.as_ref()) {
                log::warn!("history: removing the directory of {target}: {e}");
            }
        }
    }
}

/// The read side, for `gotrace history`: needs only read access to the state directory.
pub struct HistoryReader {
    root: OutDir,
}

impl HistoryReader {
    pub fn open(state_dir: &Path) -> Result<HistoryReader> {
        let path = state_dir.join(HISTORY);
        let root = OutDir::open_read(&path).map_err(|e| {
            let why = match std::fs::metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    format!("{} does not exist", path.display())
                }
                _ => e.to_string(),
            };
            Error::Other(format!(
                "no history in {}: {why} (give --state-dir the directory `gotrace agent` uses)",
                state_dir.display()
            ))
        })?;
        Ok(HistoryReader { root })
    }

    /// Every target with stored snapshots, by id. Torn entries are skipped with a warning.
    pub fn targets(&self) -> Result<Vec<StoredTarget>> {
        let mut ids: Vec<String> = self
            .root
            .names()?
            .into_iter()
            .filter_map(|n| n.into_string().ok())
            .filter(|id| valid_id(id))
            .collect();
        ids.sort_by_key(|id| id_order(id));
        let mut out = Vec::new();
        for id in ids {
            let target = self.target(&id)?;
            if !target.snapshots.is_empty() {
                out.push(target);
            }
        }
        Ok(out)
    }

    /// One target and its snapshots, oldest first. Temporary entries (the agent may be
    /// writing one now) are left out silently, torn ones with a warning.
    pub fn target(&self, id: &str) -> Result<StoredTarget> {
        let dir = self.target_dir(id)?;
        let scan = scan_target(&dir)?;
        for (torn, why) in &scan.torn {
            log::warn!(
                "history: skipping {}: {why}",
                dir.path().join(torn).display()
            );
        }
        let labels = dir
            .read(TARGET.as_ref())
            .ok()
            .and_then(|b| serde_json::from_slice::<TargetMeta>(&b).ok())
            .map(|t| t.labels)
            .unwrap_or_default();
        Ok(StoredTarget {
            id: id.to_string(),
            labels,
            snapshots: scan.snapshots,
        })
    }

    /// Loads snapshot `name` of target `id` (`None`: its latest) back into a [`Snapshot`].
    pub fn load(&self, id: &str, name: Option<&str>) -> Result<(StoredSnapshot, Snapshot)> {
        let target = self.target(id)?;
        let info = match name {
            None => target.snapshots.last(),
            Some(name) => target.snapshots.iter().find(|s| s.name == name),
        }
        .cloned()
        .ok_or_else(|| {
            Error::Other(match name {
                None => format!("target {id} has no snapshot in {}", self.root.path().display()),
                Some(name) => format!(
                    "target {id} has no snapshot {name:?} (list them with `gotrace history list {id}`)"
                ),
            })
        })?;
        let dir = self.target_dir(id)?.subdir(info.name.as_ref(), false)?;
        let meta: Meta = parse(&dir, META)?;
        let report: Report = parse(&dir, REPORT_JSON)?;
        let profile = |file: &str| -> Result<Option<pprof::proto::Profile>> {
            if !meta.files.contains_key(file) {
                return Ok(None);
            }
            let bytes = dir.read(file.as_ref())?;
            pprof::decode(&bytes)
                .map(Some)
                .map_err(|e| Error::Other(format!("{}: {e}", dir.path().join(file).display())))
        };
        let snapshot = Snapshot {
            report,
            heap: profile(HEAP_PPROF)?,
            goroutines: profile(GOROUTINE_PPROF)?,
            subtitle: meta.subtitle,
            heap_at_attach: None,
            groups: None,
        };
        Ok((info, snapshot))
    }

    fn target_dir(&self, id: &str) -> Result<OutDir> {
        if !valid_id(id) || self.root.stat(id.as_ref()).is_none() {
            return Err(Error::Other(format!(
                "no target {id:?} in {} (list them with `gotrace history list`)",
                self.root.path().display()
            )));
        }
        self.root.subdir(id.as_ref(), false)
    }
}

/// What one target's directory holds.
struct Scan {
    /// Oldest first.
    snapshots: Vec<StoredSnapshot>,
    /// Entries a crash left half-written, and why each is not whole.
    torn: Vec<(OsString, String)>,
    /// Temporary entries: being written now, or left by a crash when no agent holds the lock.
    temporary: Vec<OsString>,
}

fn scan_target(dir: &OutDir) -> Result<Scan> {
    let mut scan = Scan {
        snapshots: Vec::new(),
        torn: Vec::new(),
        temporary: Vec::new(),
    };
    for name in dir.names()? {
        if name == TARGET {
            continue;
        }
        let text = name.to_string_lossy();
        if text.starts_with('.') {
            scan.temporary.push(name);
            continue;
        }
        let Some(time) = parse_name(&text) else {
            scan.torn.push((name, "not a snapshot's name".into()));
            continue;
        };
        match check_entry(dir, &name) {
            Ok((kind, bytes)) => scan.snapshots.push(StoredSnapshot {
                name: text.into_owned(),
                time,
                kind,
                bytes,
            }),
            Err(why) => scan.torn.push((name, why)),
        }
    }
    scan.snapshots.sort_by_key(|s| s.time);
    Ok(scan)
}

/// An entry's kind and bytes on disk when it is whole; else why not.
fn check_entry(dir: &OutDir, name: &OsStr) -> std::result::Result<(Kind, u64), String> {
    let entry = dir.subdir(name, false).map_err(|e| e.to_string())?;
    let meta: Meta = parse(&entry, META).map_err(|e| format!("torn ({e})"))?;
    let mut bytes = entry.stat(META.as_ref()).map_or(0, |st| disk_bytes(&st));
    for (file, size) in &meta.files {
        match entry.stat(file.as_ref()) {
            Some(st) if st.st_size as u64 == *size => bytes += disk_bytes(&st),
            Some(st) => return Err(format!("torn: {file} has {} bytes of {size}", st.st_size)),
            None => return Err(format!("torn: {file} is missing")),
        }
    }
    if !meta.files.contains_key(REPORT_JSON) {
        return Err(format!("torn: {META} lists no {REPORT_JSON}"));
    }
    Ok((meta.kind, bytes))
}

/// Writes the snapshot's files into the new directory `tmp`, meta.json last; returns the
/// bytes they take on disk.
fn write_entry(dir: &OutDir, tmp: &OsStr, snapshot: &Snapshot, kind: Kind) -> Result<u64> {
    let entry = dir.subdir(tmp, true)?;
    let mut meta = Meta {
        kind,
        subtitle: snapshot.subtitle.clone(),
        files: BTreeMap::new(),
    };
    let mut bytes = 0;
    let put = |name: &str, data: &[u8]| -> Result<u64> {
        entry.write(name.as_ref(), data)?;
        Ok(entry.stat(name.as_ref()).map_or(0, |st| disk_bytes(&st)))
    };
    for output in export::OUTPUTS
        .iter()
        .filter(|o| STORED.contains(&o.file_name()))
    {
        if let Some(data) = output.render(snapshot)? {
            bytes += put(output.file_name(), &data)?;
            meta.files
                .insert(output.file_name().to_string(), data.len() as u64);
        }
    }
    bytes += put(META, &to_json(&meta))?;
    Ok(bytes)
}

fn parse<T: serde::de::DeserializeOwned>(dir: &OutDir, file: &str) -> Result<T> {
    let bytes = dir.read(file.as_ref())?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Other(format!(
            "{} is not readable ({e}): the snapshot is damaged",
            dir.path().join(file).display()
        ))
    })
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut json = serde_json::to_vec_pretty(value).expect("plain data serialises");
    json.push(b'\n');
    json
}

/// What a file takes on disk: its allocated blocks (what a full disk runs out of).
fn disk_bytes(st: &rustix::fs::Stat) -> u64 {
    st.st_blocks as u64 * 512
}

/// `2026-12-02T03:19:18.123Z`: sorts as time does, and names the snapshot for the user.
fn entry_name(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

fn parse_name(name: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(name).ok()
}

/// `.tmp-<16 random hex digits>`: hidden, so never taken for a snapshot.
fn temp_name(dir: &OutDir) -> Result<OsString> {
    let mut random = [0u8; 8];
    rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty()).map_err(|e| {
        Error::Output {
            path: dir.path().to_path_buf(),
            source: e.into(),
        }
    })?;
    Ok(format!("{TMP_PREFIX}{:016x}", u64::from_ne_bytes(random)).into())
}

/// `PID-STARTTIME`: digits, one dash.
fn valid_id(id: &str) -> bool {
    id_order(id).is_some()
}

/// `(pid, start time)` of a target id, to list targets in pid order.
fn id_order(id: &str) -> Option<(u32, u64)> {
    let (pid, start) = id.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(start) {
        return None;
    }
    Some((pid.parse().ok()?, start.parse().ok()?))
}

fn warn_removed(dir: &OutDir, name: &OsStr, why: &str) {
    let path = dir.path().join(name);
    match dir.remove_all(name) {
        Ok(()) => log::warn!("history: removed {} ({why})", path.display()),
        Err(e) => log::warn!(
            "history: skipping {} ({why}); removing it failed: {e}",
            path.display()
        ),
    }
}
