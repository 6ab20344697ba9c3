//! Probes on the C library the target has mapped (`malloc`, `calloc`, `realloc`, `free`), for
//! memory that C code (cgo, or a linked C library) allocates: invisible to Go's heap profile.
//! C functions return on C stacks, which Go never moves, so their returns are uretprobes.

use std::path::PathBuf;

use object::{Object, ObjectSymbol};
use tracer_common::ProbeKind;

use super::plan::{Placement, PlannedProbe, ProbeSite};
use crate::{binary::elf::ElfInfo, error::Result};

/// (program, function, placement, kind): what goes where in libc.
const C_PROBES: &[(&str, &str, Placement, ProbeKind)] = &[
    (
        "gotrace_c_malloc",
        "malloc",
        Placement::Entry,
        ProbeKind::CMalloc,
    ),
    (
        "gotrace_c_calloc",
        "calloc",
        Placement::Entry,
        ProbeKind::CMalloc,
    ),
    (
        "gotrace_c_realloc",
        "realloc",
        Placement::Entry,
        ProbeKind::CMalloc,
    ),
    (
        "gotrace_c_alloc_ret",
        "malloc",
        Placement::Returns,
        ProbeKind::CMalloc,
    ),
    (
        "gotrace_c_alloc_ret",
        "calloc",
        Placement::Returns,
        ProbeKind::CMalloc,
    ),
    (
        "gotrace_c_alloc_ret",
        "realloc",
        Placement::Returns,
        ProbeKind::CMalloc,
    ),
    ("gotrace_c_free", "free", Placement::Entry, ProbeKind::CFree),
];

/// Programs of these probes, as loaded in the kernel.
pub const PROGRAMS: [&str; 5] = [
    "gotrace_c_malloc",
    "gotrace_c_calloc",
    "gotrace_c_realloc",
    "gotrace_c_alloc_ret",
    "gotrace_c_free",
];

/// The C library mapped by process `pid`: its path as the process sees it, and a path that
/// reaches that file from here (through `/proc/PID/root`, also across mount namespaces).
pub fn find_libc(pid: u32) -> Option<(String, PathBuf)> {
    let path = crate::target::mappings(pid)
        .ok()?
        .into_iter()
        .find_map(|m| {
            let path = m.path?;
            let name = path.rsplit('/').next()?;
            (name.starts_with("libc.so") || (name.starts_with("libc-") && name.ends_with(".so")))
                .then_some(path)
        })?;
    let reach = PathBuf::from(format!("/proc/{pid}/root{path}"));
    Some((path, reach))
}

/// Plans the libc probes of process `pid` (none when it has no dynamic C library: a pure Go
/// program allocates nothing in C).
pub fn plan(pid: u32, enabled: bool) -> Result<Vec<PlannedProbe>> {
    let Some((shown, reach)) = find_libc(pid) else {
        return Ok(Vec::new());
    };
    let data = std::fs::read(&reach).map_err(|source| crate::Error::Open {
        path: reach.clone(),
        source,
    })?;
    let elf = ElfInfo::parse(&data, &shown)?;
    let file = object::File::parse(&*data).map_err(|e| crate::Error::BadBinary {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let address = |name: &str| {
        file.dynamic_symbols()
            .find(|s| s.name() == Ok(name) && s.is_definition())
            .map(|s| s.address())
    };
    Ok(C_PROBES
        .iter()
        .map(|&(program, function, placement, kind)| {
            let site = address(function).and_then(|a| {
                Some(ProbeSite {
                    function: format!("{function} ({shown})"),
                    address: a,
                    file_offset: elf.file_offset(a)?,
                })
            });
            PlannedProbe {
                name: if kind == ProbeKind::CFree {
                    "c-free"
                } else {
                    "c-malloc"
                },
                kind,
                program,
                placement,
                enabled,
                unavailable: site
                    .is_none()
                    .then(|| format!("{function} not found in {shown}")),
                sites: site.into_iter().collect(),
                target: Some(reach.clone()),
            }
        })
        .collect())
}
