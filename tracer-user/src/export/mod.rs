//! The last stage: writing a [`Snapshot`]. Each file is an [`Output`] — report.json, the pprof
//! profiles, the flamegraphs and their folded stacks — registered in [`OUTPUTS`]; `attach`,
//! `check` and `record` all write through [`write_all`] or [`write_one`].

pub mod file;
pub mod flamegraph;

use std::path::{Path, PathBuf};

use flamegraph::HeapValue;

use crate::{
    error::Result,
    pprof::{self, proto},
    snapshot::Snapshot,
};

pub use crate::snapshot::{Report, HEAP_PPROF};

/// One file of a session's results.
pub trait Output: Sync {
    /// The file's name in an output directory.
    fn file_name(&self) -> &'static str;
    /// Writes the file at `path`; `false` when the snapshot has nothing for it (no heap
    /// profile, say).
    fn write(&self, snapshot: &Snapshot, path: &Path) -> Result<bool>;
}

pub const REPORT_JSON: &str = "report.json";
pub const GOROUTINE_PPROF: &str = "goroutine.pb.gz";

struct ReportJson;
struct Pprof(&'static str, fn(&Snapshot) -> Option<&proto::Profile>);
struct HeapSvg(&'static str, HeapValue);
struct HeapFolded(&'static str, HeapValue);

impl Output for ReportJson {
    fn file_name(&self) -> &'static str {
        REPORT_JSON
    }
    fn write(&self, s: &Snapshot, path: &Path) -> Result<bool> {
        let json = s.report.to_json() + "\n";
        file::write_atomic(path, |w| w.write_all(json.as_bytes()))?;
        Ok(true)
    }
}

impl Output for Pprof {
    fn file_name(&self) -> &'static str {
        self.0
    }
    fn write(&self, s: &Snapshot, path: &Path) -> Result<bool> {
        let Some(profile) = (self.1)(s) else {
            return Ok(false);
        };
        write_pprof(profile, path)?;
        Ok(true)
    }
}

impl Output for HeapSvg {
    fn file_name(&self) -> &'static str {
        self.0
    }
    fn write(&self, s: &Snapshot, path: &Path) -> Result<bool> {
        let Some(profile) = &s.heap else {
            return Ok(false);
        };
        flamegraph::write_heap_svg(path, profile, self.1, Some(&s.subtitle))?;
        Ok(true)
    }
}

impl Output for HeapFolded {
    fn file_name(&self) -> &'static str {
        self.0
    }
    fn write(&self, s: &Snapshot, path: &Path) -> Result<bool> {
        let Some(profile) = &s.heap else {
            return Ok(false);
        };
        let text = flamegraph::folded(profile, self.1.sample_type())?;
        file::write_atomic(path, |w| w.write_all(text.as_bytes()))?;
        Ok(true)
    }
}

/// The heap profile output (`record -o` writes it alone).
pub const HEAP: &dyn Output = &Pprof(HEAP_PPROF, |s| s.heap.as_ref());
/// The in-use flamegraph (`--flamegraph` keeps it up to date while attached).
pub const HEAP_INUSE_SVG: &dyn Output = &HeapSvg("heap-inuse.svg", HeapValue::InuseBytes);

/// Every file of an output directory, in the order they are written (report.json last, so a
/// reader that waits for it finds the others in place).
pub const OUTPUTS: &[&dyn Output] = &[
    HEAP,
    HEAP_INUSE_SVG,
    &HeapSvg("heap-alloc.svg", HeapValue::AllocBytes),
    &HeapFolded("heap-inuse.folded", HeapValue::InuseBytes),
    &HeapFolded("heap-alloc.folded", HeapValue::AllocBytes),
    &Pprof(GOROUTINE_PPROF, |s| s.goroutines.as_ref()),
    &ReportJson,
];

/// Writes every output into `dir` (created if needed); returns the names written.
pub fn write_all(snapshot: &Snapshot, dir: &Path) -> Result<Vec<&'static str>> {
    std::fs::create_dir_all(dir).map_err(|source| crate::Error::Output {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for output in OUTPUTS {
        if output.write(snapshot, &dir.join(output.file_name()))? {
            written.push(output.file_name());
        }
    }
    Ok(written)
}

/// Writes one output at `path`; `false` when the snapshot has nothing for it.
pub fn write_one(snapshot: &Snapshot, output: &dyn Output, path: &Path) -> Result<bool> {
    output.write(snapshot, path)
}

/// Writes a profile gzipped, as Go does, replacing any previous file atomically.
pub fn write_pprof(profile: &proto::Profile, path: &Path) -> Result<()> {
    let bytes = pprof::gzip(profile)?;
    file::write_atomic(path, |w| w.write_all(&bytes))
}

/// `gotrace-<pid>-<time>`: the default output directory.
pub fn default_dir(pid: u32) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "")
        .trim_end_matches('Z')
        .to_string();
    PathBuf::from(format!("gotrace-{pid}-{stamp}"))
}
