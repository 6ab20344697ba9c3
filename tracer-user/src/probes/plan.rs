//! Which runtime functions each probe hooks, and the exact instructions chosen in this binary.

use serde::Serialize;
use tracer_common::ProbeKind;

use super::placement;
use super::ProbeSelection;
use crate::binary::GoBinary;

/// How a probe is placed in its function(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Once per call, after the stack-check prologue.
    Entry,
    /// On every RET instruction: the function's results are in registers.
    Returns,
}

/// A probe gotrace knows how to place.
#[derive(Debug)]
pub struct ProbeDef {
    pub kind: ProbeKind,
    /// User-facing name (`--help`, `inspect`, the live summary).
    pub name: &'static str,
    /// Program in the eBPF object.
    pub program: &'static str,
    pub placement: Placement,
    /// Runtime functions to hook; those absent from a given Go release are skipped.
    pub functions: FunctionSet,
}

#[derive(Debug)]
pub enum FunctionSet {
    Named(&'static [&'static str]),
    /// Every allocation entry point: the size-class-specialised mallocs that Go 1.27 (and 1.26
    /// with GOEXPERIMENT=sizespecializedmalloc) calls directly, and the per-kind mallocs that
    /// `mallocgc` dispatches to from 1.24. Probing the leaves rather than `mallocgc` counts
    /// each allocation exactly once: `mallocgc` tail-calls the specialised ones.
    Allocators,
}

pub const PROBES: &[ProbeDef] = &[
    ProbeDef {
        kind: ProbeKind::ChanMake,
        name: "chan-make",
        program: "gotrace_makechan_ret",
        placement: Placement::Returns,
        functions: FunctionSet::Named(&["runtime.makechan"]),
    },
    ProbeDef {
        kind: ProbeKind::GoroutineCreate,
        name: "goroutine-create",
        program: "gotrace_newproc1_ret",
        placement: Placement::Returns,
        functions: FunctionSet::Named(&["runtime.newproc1"]),
    },
    ProbeDef {
        kind: ProbeKind::GoroutineExit,
        name: "goroutine-exit",
        program: "gotrace_goexit1",
        placement: Placement::Entry,
        functions: FunctionSet::Named(&["runtime.goexit1"]),
    },
    ProbeDef {
        kind: ProbeKind::ChanSend,
        name: "chan-send",
        program: "gotrace_chansend",
        placement: Placement::Entry,
        functions: FunctionSet::Named(&["runtime.chansend"]),
    },
    ProbeDef {
        kind: ProbeKind::SetFinalizer,
        name: "set-finalizer",
        program: "gotrace_setfinalizer",
        placement: Placement::Entry,
        functions: FunctionSet::Named(&["runtime.SetFinalizer"]),
    },
    ProbeDef {
        kind: ProbeKind::Malloc,
        name: "exact-alloc",
        program: "gotrace_mallocgc",
        placement: Placement::Entry,
        functions: FunctionSet::Allocators,
    },
];

/// One instruction to put a uprobe on.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeSite {
    pub function: String,
    /// Link-time virtual address of the instruction.
    pub address: u64,
    /// Offset in the executable file (what the kernel's uprobe API takes).
    pub file_offset: u64,
}

/// A probe resolved against one binary.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedProbe {
    pub name: &'static str,
    #[serde(skip)]
    pub kind: ProbeKind,
    #[serde(skip)]
    pub program: &'static str,
    pub placement: Placement,
    pub enabled: bool,
    pub sites: Vec<ProbeSite>,
    /// Why the probe cannot be placed in this binary, if it cannot.
    pub unavailable: Option<String>,
    /// The file the sites are in, when not the Go executable (the C library).
    #[serde(skip)]
    pub target: Option<std::path::PathBuf>,
}

/// Resolves every probe against `binary`; `selection` says which are enabled.
pub fn plan(binary: &GoBinary, selection: &ProbeSelection) -> Vec<PlannedProbe> {
    PROBES
        .iter()
        .map(|def| {
            let mut planned = PlannedProbe {
                name: def.name,
                kind: def.kind,
                program: def.program,
                placement: def.placement,
                enabled: selection.contains(def.kind),
                sites: Vec::new(),
                unavailable: None,
                target: None,
            };
            match sites(binary, def) {
                Ok(sites) => planned.sites = sites,
                Err(reason) => planned.unavailable = Some(reason),
            }
            planned
        })
        .collect()
}

fn sites(binary: &GoBinary, def: &ProbeDef) -> Result<Vec<ProbeSite>, String> {
    let pcln = binary.pclntab();
    let funcs: Vec<_> = match &def.functions {
        FunctionSet::Named(names) => names.iter().filter_map(|n| pcln.find(n)).collect(),
        FunctionSet::Allocators => {
            let leaves: Vec<_> = pcln
                .funcs()
                .filter(|f| is_allocator_leaf(&f.name))
                .collect();
            if leaves.is_empty() {
                pcln.find("runtime.mallocgc").into_iter().collect()
            } else {
                leaves
            }
        }
    };
    if funcs.is_empty() {
        return Err(match &def.functions {
            FunctionSet::Named(names) => format!("{} not found in the binary", names.join(", ")),
            FunctionSet::Allocators => "runtime.mallocgc not found in the binary".into(),
        });
    }
    let mut out = Vec::new();
    for f in funcs {
        let code = binary
            .code(&f)
            .ok_or_else(|| format!("the code of {} is not in the file", f.name))?;
        let addrs = match def.placement {
            Placement::Entry => vec![placement::after_prologue(code, f.entry)],
            Placement::Returns => placement::ret_sites(code, f.entry),
        };
        if addrs.is_empty() {
            return Err(format!("no RET instruction found in {}", f.name));
        }
        for address in addrs {
            let file_offset = binary
                .elf
                .file_offset(address)
                .ok_or_else(|| format!("{address:#x} in {} is not backed by the file", f.name))?;
            out.push(ProbeSite {
                function: f.name.clone(),
                address,
                file_offset,
            });
        }
    }
    Ok(out)
}

/// The functions that finish every allocation path from Go 1.24 on (see [`FunctionSet`]).
fn is_allocator_leaf(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("runtime.mallocgc") else {
        return false;
    };
    // Size-class-specialised: mallocgcTinySC2, mallocgcSmallNoScanSC3, mallocgcSmallScanNoHeaderSC1...
    let specialised = rest.rfind("SC").is_some_and(|i| {
        !rest[i + 2..].is_empty() && rest[i + 2..].bytes().all(|b| b.is_ascii_digit())
    });
    specialised
        || matches!(
            rest,
            "Tiny" | "SmallNoscan" | "SmallScanNoHeader" | "SmallScanHeader" | "Large"
        )
}

#[cfg(test)]
mod tests {
    use super::is_allocator_leaf;

    #[test]
    fn allocator_leaves() {
        for leaf in [
            "runtime.mallocgcTiny",
            "runtime.mallocgcSmallNoscan",
            "runtime.mallocgcLarge",
            "runtime.mallocgcTinySC2",
            "runtime.mallocgcSmallScanNoHeaderSC17",
        ] {
            assert!(is_allocator_leaf(leaf), "{leaf}");
        }
        for other in [
            "runtime.mallocgc",
            "runtime.mallocgcSmallScanSlowPath",
            "runtime.mallocgcTinySlowPath",
            "runtime.mallocgcSmallNoscanReuse",
            "runtime.malg",
        ] {
            assert!(!is_allocator_leaf(other), "{other}");
        }
    }
}
