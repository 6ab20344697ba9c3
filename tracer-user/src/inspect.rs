//! `gotrace inspect`: everything gotrace knows about a Go binary or process before attaching —
//! the first thing to run when something does not attach.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    binary::GoBinary,
    error::Result,
    goruntime::{
        datasyms::{self, DataSymbol, Located},
        OffsetsSource, Runtime,
    },
    probes::{plan, PlannedProbe, ProbeSelection},
    target::Target,
};

#[derive(Debug, Serialize)]
pub struct Inspection {
    pub binary: String,
    pub pid: Option<u32>,
    /// Runtime minus link-time addresses (PIE processes only).
    pub load_bias: Option<u64>,
    pub go_version: String,
    pub experiments: Vec<String>,
    pub module: Option<String>,
    pub build_settings: BTreeMap<String, String>,
    pub symbol_table: bool,
    pub dwarf: bool,
    pub pie: bool,
    /// `None` when gotrace can trace it, otherwise why not.
    pub unsupported: Option<String>,
    pub offsets_source: Option<OffsetsSource>,
    pub offsets: BTreeMap<String, u64>,
    pub variables: BTreeMap<&'static str, Option<Located>>,
    pub probes: Vec<PlannedProbe>,
}

/// Inspects the executable of a running process (needs read access to `/proc/PID/exe`).
pub fn process(pid: u32) -> Result<Inspection> {
    let target = Target::open(pid)?;
    // Proves a nearest-release table on the live goroutines (an error here is the answer).
    let runtime = Runtime::for_process(&target)?;
    let mut i = binary(&target.binary);
    i.offsets_source = Some(runtime.offsets.source.clone());
    i.offsets = runtime
        .offsets
        .iter()
        .map(|(f, v)| (format!("{f:?}"), v))
        .collect();
    i.pid = Some(pid);
    i.load_bias = target.binary.elf.pie.then_some(target.load_bias);
    Ok(i)
}

/// Inspects a Go executable file.
pub fn file(path: &std::path::Path) -> Result<Inspection> {
    let b = GoBinary::open(path, &path.display().to_string())?;
    Ok(binary(&b))
}

pub fn binary(b: &GoBinary) -> Inspection {
    let runtime = Runtime::of(b);
    let (unsupported, offsets_source, offsets) = match &runtime {
        Ok(rt) => (
            rt.probe_config(b).err().map(|e| e.to_string()),
            Some(rt.offsets.source.clone()),
            rt.offsets
                .iter()
                .map(|(f, v)| (format!("{f:?}"), v))
                .collect(),
        ),
        Err(e) => (Some(e.to_string()), None, BTreeMap::new()),
    };
    Inspection {
        binary: b.path.clone(),
        pid: None,
        load_bias: None,
        go_version: b.buildinfo.version_string.clone(),
        experiments: b.buildinfo.experiments.clone(),
        module: b.buildinfo.path.clone(),
        build_settings: b.buildinfo.settings.iter().cloned().collect(),
        symbol_table: b.elf.has_symtab,
        dwarf: b.elf.has_dwarf,
        pie: b.elf.pie,
        unsupported,
        offsets_source,
        offsets,
        variables: DataSymbol::ALL
            .iter()
            .map(|s| {
                let offsets = runtime.as_ref().ok().map(|r| &r.offsets);
                (s.name(), datasyms::locate(b, offsets, *s))
            })
            .collect(),
        probes: plan::plan(b, &ProbeSelection::default_set()),
    }
}

impl Inspection {
    /// The human-readable form printed by `gotrace inspect`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("{k:<12}{v}\n"));
        line(
            "binary",
            match self.pid {
                Some(pid) => format!("{} (pid {pid})", self.binary),
                None => self.binary.clone(),
            },
        );
        line(
            "go",
            format!(
                "{}{}",
                self.go_version,
                if self.experiments.is_empty() {
                    String::new()
                } else {
                    format!(" (experiments: {})", self.experiments.join(", "))
                }
            ),
        );
        line("module", self.module.clone().unwrap_or_else(|| "-".into()));
        let build: Vec<String> = self
            .build_settings
            .iter()
            .filter(|(k, _)| !k.starts_with("DefaultGODEBUG"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        line("build", build.join(" "));
        line(
            "symbols",
            format!(
                "{}, {}{}",
                if self.symbol_table {
                    "symbol table"
                } else {
                    "no symbol table"
                },
                if self.dwarf { "DWARF" } else { "no DWARF" },
                if self.pie { ", PIE" } else { "" }
            ),
        );
        if let Some(bias) = self.load_bias {
            line("load bias", format!("{bias:#x}"));
        }
        line(
            "supported",
            match (&self.unsupported, &self.offsets_source) {
                (None, Some(OffsetsSource::Dwarf)) => {
                    "yes; struct offsets from the binary's DWARF".into()
                }
                (None, Some(OffsetsSource::Table { release })) => {
                    format!("yes; struct offsets from gotrace's table for Go {release}")
                }
                (
                    None,
                    Some(OffsetsSource::Nearest {
                        release,
                        for_release,
                        verified,
                    }),
                ) if verified.is_empty() => format!(
                    "partly: no table for Go {for_release}; the offsets of Go {release} are proven \
                     against the running process when attaching (goroutine fields only)"
                ),
                (
                    None,
                    Some(OffsetsSource::Nearest {
                        release, verified, ..
                    }),
                ) => format!(
                    "partly: offsets of Go {release} proven on the running process for {} fields",
                    verified.len()
                ),
                (Some(why), _) => format!("no: {why}"),
                (None, None) => "yes".into(),
            },
        );
        // Columns as wide as their longest entry, and never touching the next one.
        let name_width = self.variables.keys().map(|n| n.len()).max().unwrap_or(0) + 2;
        for (name, found) in &self.variables {
            let v = match found {
                Some(Located::Symtab { address }) => format!("{address:#x} (symbol table)"),
                Some(Located::Code { address, function }) => {
                    format!("{address:#x} (decoded from {function})")
                }
                None => "not found".into(),
            };
            line("variable", format!("{name:<name_width$}{v}"));
        }
        out.push_str("probes\n");
        let probe_width = self.probes.iter().map(|p| p.name.len()).max().unwrap_or(0) + 2;
        for p in &self.probes {
            let mode = if p.enabled { "default" } else { "opt-in" };
            let where_ = match &p.unavailable {
                Some(why) => format!("UNAVAILABLE: {why}"),
                None => {
                    let funcs: std::collections::BTreeSet<&str> =
                        p.sites.iter().map(|s| s.function.as_str()).collect();
                    let addrs: Vec<String> = p
                        .sites
                        .iter()
                        .take(4)
                        .map(|s| format!("{:#x}", s.address))
                        .collect();
                    let funcs = if funcs.len() > 3 {
                        format!("{} functions", funcs.len())
                    } else {
                        funcs.into_iter().collect::<Vec<_>>().join(", ")
                    };
                    format!(
                        "{funcs} at {} instruction{} ({}{})",
                        p.sites.len(),
                        if p.sites.len() == 1 { "" } else { "s" },
                        addrs.join(" "),
                        if p.sites.len() > 4 { " ..." } else { "" }
                    )
                }
            };
            out.push_str(&format!("  {:<probe_width$}{:<9}{where_}\n", p.name, mode));
        }
        out
    }
}
