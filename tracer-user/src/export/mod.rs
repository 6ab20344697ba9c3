//! The last stage: writing a [`Snapshot`]. Each file is an [`Output`] — report.json, the pprof
//! profiles, the flamegraphs and their folded stacks — registered in [`OUTPUTS`]; `attach`,
//! `check` and `record` all write through [`write_all`] or [`write_one`], into places opened
//! and checked by [`file`] when the command starts.

pub mod flamegraph;
pub mod page;
pub mod page_data;
pub mod timeline_svg;
pub mod tree;

use std::path::PathBuf;

use crate::files::{OutFile, Sink};
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
    /// The file's bytes; `None` when the snapshot has nothing for it (no heap profile, say).
    fn render(&self, snapshot: &Snapshot) -> Result<Option<Vec<u8>>>;
}

pub const REPORT_JSON: &str = "report.json";
pub const GOROUTINE_PPROF: &str = "goroutine.pb.gz";

struct ReportJson;
struct Pprof(&'static str, fn(&Snapshot) -> Option<&proto::Profile>);
struct HeapSvg(&'static str, HeapValue);
struct HeapFolded(&'static str, HeapValue);
struct IndexHtml;
struct TimelineSvg;

impl Output for ReportJson {
    fn file_name(&self) -> &'static str {
        REPORT_JSON
    }
    fn render(&self, s: &Snapshot) -> Result<Option<Vec<u8>>> {
        Ok(Some((s.report.to_json() + "\n").into_bytes()))
    }
}

impl Output for Pprof {
    fn file_name(&self) -> &'static str {
        self.0
    }
    fn render(&self, s: &Snapshot) -> Result<Option<Vec<u8>>> {
        (self.1)(s).map(pprof::gzip).transpose()
    }
}

impl Output for HeapSvg {
    fn file_name(&self) -> &'static str {
        self.0
    }
    fn render(&self, s: &Snapshot) -> Result<Option<Vec<u8>>> {
        s.heap
            .as_ref()
            .map(|profile| flamegraph::heap_svg(profile, self.1, Some(&s.subtitle)))
            .transpose()
    }
}

impl Output for HeapFolded {
    fn file_name(&self) -> &'static str {
        self.0
    }
    fn render(&self, s: &Snapshot) -> Result<Option<Vec<u8>>> {
        s.heap
            .as_ref()
            .map(|profile| Ok(flamegraph::folded(profile, self.1.sample_type())?.into_bytes()))
            .transpose()
    }
}

impl Output for IndexHtml {
    fn file_name(&self) -> &'static str {
        "index.html"
    }
    fn render(&self, s: &Snapshot) -> Result<Option<Vec<u8>>> {
        let data = page_data::PageData::report(s)?;
        Ok(Some(page::with_data(&data.to_json()).into_bytes()))
    }
}

impl Output for TimelineSvg {
    fn file_name(&self) -> &'static str {
        "timeline.svg"
    }
    fn render(&self, s: &Snapshot) -> Result<Option<Vec<u8>>> {
        let t = &s.report.target;
        let subtitle = format!("pid {} ({}, {})", t.pid, t.exe, t.go_version);
        Ok(Some(
            timeline_svg::svg(&s.report.timeline, &subtitle).into_bytes(),
        ))
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
    &TimelineSvg,
    &IndexHtml,
    &ReportJson,
];

/// Writes every output into `sink`; returns the names written.
pub fn write_all(snapshot: &Snapshot, sink: &mut Sink) -> Result<Vec<&'static str>> {
    let mut written = Vec::new();
    for output in OUTPUTS {
        if let Some(bytes) = output.render(snapshot)? {
            sink.write(output.file_name().as_ref(), &bytes)?;
            written.push(output.file_name());
        }
    }
    Ok(written)
}

/// Writes one output as `file`; `false` when the snapshot has nothing for it.
pub fn write_one(snapshot: &Snapshot, output: &dyn Output, file: &mut OutFile) -> Result<bool> {
    let Some(bytes) = output.render(snapshot)? else {
        return Ok(false);
    };
    file.write(&bytes)?;
    Ok(true)
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
