//! `gotrace dump`: every goroutine of a live process, like the SIGQUIT traceback but without
//! stopping or signalling it: goid, state, wait reason and how long, full stack, creation site;
//! grouped by identical stacks, largest group first. Read with process_vm_readv only.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write,
    sync::Arc,
};

use serde::Serialize;

use crate::{
    error::Result,
    goruntime::{
        allgs::{AllGs, GSnapshot},
        traceback::{self, show_frame, Tracebacks},
        Offsets, Runtime,
    },
    observe::{Classifier, LookedG},
    symbols::{pclntab::func_name_for_print, Symbolizer},
    target::Target,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DumpFrame {
    pub function: String,
    pub file: String,
    pub line: u32,
    /// Return address minus function entry, as Go prints `+0x..` (absent for inlined calls).
    pub offset: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CreatedBy {
    /// The goroutine that ran the `go` statement (Go 1.21+ records it).
    pub parent_goid: Option<u64>,
    /// The `go` statement, shared by every goroutine it started.
    #[serde(flatten)]
    pub site: Arc<CreationSite>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CreationSite {
    pub function: String,
    pub file: String,
    pub line: u32,
    pub offset: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct GoroutineDump {
    pub goid: u64,
    /// What Go prints between the brackets: the wait reason when waiting, else the state.
    pub state: Arc<str>,
    /// Seconds it has been blocked, when the runtime recorded when it started waiting.
    pub waiting_s: Option<f64>,
    /// The runtime's own goroutines (GC workers...), which Go's dump leaves out.
    pub system: bool,
    /// Frames as Go prints them: runtime internals hidden, innermost first.
    pub frames: Arc<[DumpFrame]>,
    pub created_by: Option<CreatedBy>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Group {
    pub count: usize,
    pub goids: Vec<u64>,
    pub state: Arc<str>,
    pub frames: Arc<[DumpFrame]>,
    pub created_by: Option<CreatedBy>,
    /// The longest wait in the group.
    pub max_waiting_s: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Dump {
    pub pid: u32,
    pub go_version: String,
    pub goroutines: Vec<GoroutineDump>,
    pub groups: Vec<Group>,
}

/// Dumps the goroutines of `pid` (user goroutines; `system` adds the runtime's own).
pub fn take(pid: u32, system: bool) -> Result<Dump> {
    let target = Target::open(pid)?;
    let runtime = Runtime::for_process(&target)?;
    let allgs = AllGs::new(&target, &runtime).ok_or_else(|| {
        crate::Error::Other(format!(
            "{}: cannot find the runtime's goroutine list (runtime.allgs) in this binary",
            target.exe
        ))
    })?;
    let snapshot = allgs.snapshot(&target)?;
    let tracebacks = Tracebacks::new(&target, &runtime);
    let sym = Symbolizer::new(target.binary.clone());
    build(&target, snapshot, &tracebacks, &sym, system)
}

/// Builds the dump of a snapshot of `allgs`, a chunk of goroutines at a time: stacks are
/// unwound per chunk and each distinct stack, creation site and state is made once and shared
/// (`Arc`), so a million goroutines in a few groups cost ~100 bytes each, not their frames'
/// strings each (5.6 s and 821 MB peak before, for a million).
pub fn build(
    target: &Target,
    snapshot: Vec<GSnapshot>,
    tracebacks: &Tracebacks,
    sym: &Symbolizer,
    system: bool,
) -> Result<Dump> {
    const CHUNK: usize = 4096;
    let pcln = target.binary.pclntab();
    let classified = Classifier::default().classify(pcln, snapshot);
    let live: Vec<&LookedG> = classified
        .iter()
        .filter(|g| g.g.is_live() && (system || !g.system))
        .collect();
    let now = monotonic_ns();
    let mut made = Made::default();
    let mut goroutines = Vec::new();
    for chunk in live.chunks(CHUNK) {
        let stacks = tracebacks.unwind(target, &chunk.iter().map(|g| &g.g).collect::<Vec<_>>())?;
        for (looked, stack) in chunk.iter().zip(stacks) {
            let g = &looked.g;
            let state = made
                .states
                .entry((g.status, g.waitreason))
                .or_insert_with(|| state_of(g, target, tracebacks).into())
                .clone();
            let waiting_s = (matches!(g.status, traceback::G_WAITING | traceback::G_SYSCALL)
                && g.waitsince > 0)
                .then(|| (now - g.waitsince) as f64 / 1e9)
                .filter(|s| *s >= 0.0);
            let frames = match made.frames.get(&stack) {
                Some(f) => f.clone(),
                None => {
                    let f: Arc<[DumpFrame]> = frames_of(&stack, target, sym).into();
                    made.frames.insert(stack, f.clone());
                    f
                }
            };
            // As Go's printcreatedby: not for the main goroutine, nor when the runtime started
            // it.
            let created_by = if g.goid == 1 {
                None
            } else {
                made.creators
                    .entry(g.gopc)
                    .or_insert_with(|| creation_site(g.gopc, target, sym).map(Arc::new))
                    .clone()
                    .map(|site| CreatedBy {
                        parent_goid: g.parent_goid,
                        site,
                    })
            };
            goroutines.push(GoroutineDump {
                goid: g.goid,
                state,
                waiting_s,
                system: looked.system,
                frames,
                created_by,
            });
        }
    }
    goroutines.sort_by_key(|g| g.goid);
    let groups = group(&goroutines);
    Ok(Dump {
        pid: target.pid,
        go_version: target.binary.buildinfo.version_string.clone(),
        goroutines,
        groups,
    })
}

/// What is made once per distinct value while building a dump.
#[derive(Default)]
struct Made {
    states: HashMap<(u32, u8), Arc<str>>,
    frames: HashMap<Vec<u64>, Arc<[DumpFrame]>>,
    creators: HashMap<u64, Option<Arc<CreationSite>>>,
}

/// What Go prints between the brackets.
fn state_of(g: &GSnapshot, target: &Target, tracebacks: &Tracebacks) -> String {
    match g.status {
        traceback::G_WAITING | traceback::G_LEAKED if g.waitreason != 0 => {
            let reason = tracebacks
                .wait_reason(target, g.waitreason)
                .unwrap_or_else(|| format!("wait reason {}", g.waitreason));
            if g.status == traceback::G_LEAKED {
                format!("{reason} (leaked)")
            } else {
                reason
            }
        }
        s => traceback::status_name(s).to_string(),
    }
}

/// Go's traceback prints a generic function's shape arguments as `[...]`.
fn print_name(name: String, target: &Target) -> String {
    func_name_for_print(&name, target.binary.version()).into_owned()
}

/// The frames of a stack as Go prints them.
fn frames_of(stack: &[u64], target: &Target, sym: &Symbolizer) -> Vec<DumpFrame> {
    let pcln = target.binary.pclntab();
    let wrapper_id = Offsets::func_id_wrapper(target.binary.version());
    let mut frames = Vec::new();
    for &pc in stack {
        let func = pcln.func_index_for_pc(pc.saturating_sub(1));
        let entry = func.and_then(|i| pcln.func(i)).map(|f| f.entry);
        // Go's traceback hides compiler-generated wrappers (`go f(x)`'s closure, method
        // wrappers): their funcID says so.
        let wrapper = wrapper_id.is_some() && func.and_then(|i| pcln.func_id(i)) == wrapper_id;
        let logical = sym.caller_frames(pc);
        let n = logical.len();
        for (k, f) in logical.into_iter().enumerate() {
            // Only the outermost logical frame of a PC is a real call with an offset.
            let outer = k + 1 == n;
            if !show_frame(&f.function) || (outer && wrapper) {
                continue;
            }
            frames.push(DumpFrame {
                function: print_name(f.function, target),
                file: f.file,
                line: f.line,
                offset: outer.then(|| entry.map(|e| pc - e)).flatten(),
            });
        }
    }
    frames
}

fn creation_site(gopc: u64, target: &Target, sym: &Symbolizer) -> Option<CreationSite> {
    let creator = sym.caller_frame(gopc);
    (gopc != 0 && show_frame(&creator.function)).then(|| CreationSite {
        function: print_name(creator.function, target),
        file: creator.file,
        line: creator.line,
        offset: target
            .binary
            .pclntab()
            .func_for_pc(gopc.saturating_sub(1))
            .map_or(0, |func| gopc - func.entry),
    })
}

/// What makes goroutines one group: state, frames (function, file, line), creation site.
type GroupKey = (Arc<str>, Vec<(String, String, u32)>, Option<(String, u32)>);

/// Goroutines with the same state, frames and creation site, largest group first. The key of
/// each distinct frames list is made once (they are shared).
fn group(goroutines: &[GoroutineDump]) -> Vec<Group> {
    let mut keys: HashMap<*const DumpFrame, Vec<(String, String, u32)>> = HashMap::new();
    let mut groups: BTreeMap<GroupKey, Group> = BTreeMap::new();
    for g in goroutines {
        let frames_key = keys
            .entry(g.frames.as_ptr())
            .or_insert_with(|| {
                g.frames
                    .iter()
                    .map(|f| (f.function.clone(), f.file.clone(), f.line))
                    .collect()
            })
            .clone();
        let key = (
            g.state.clone(),
            frames_key,
            g.created_by
                .as_ref()
                .map(|c| (c.site.file.clone(), c.site.line)),
        );
        let entry = groups.entry(key).or_insert_with(|| Group {
            count: 0,
            goids: Vec::new(),
            state: g.state.clone(),
            frames: g.frames.clone(),
            created_by: g.created_by.clone(),
            max_waiting_s: None,
        });
        entry.count += 1;
        entry.goids.push(g.goid);
        entry.max_waiting_s = match (entry.max_waiting_s, g.waiting_s) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    let mut out: Vec<Group> = groups.into_values().collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.goids[0].cmp(&b.goids[0])));
    out
}

fn monotonic_ns() -> i64 {
    // Go's nanotime() is this clock, so g.waitsince values compare directly.
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

impl Dump {
    /// Text in the style of Go's tracebacks; grouped unless `every` is set.
    pub fn render(&self, every: bool) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "pid {} ({}): {} goroutines in {} groups\n",
            self.pid,
            self.go_version,
            self.goroutines.len(),
            self.groups.len()
        );
        if every {
            out.push_str(&self.render_goroutines());
            return out;
        }
        for grp in &self.groups {
            let ids: Vec<String> = grp.goids.iter().take(8).map(u64::to_string).collect();
            let _ = writeln!(
                out,
                "{} goroutine{} [{}{}]: {}{}",
                grp.count,
                if grp.count == 1 { "" } else { "s" },
                grp.state,
                wait_text(grp.max_waiting_s),
                ids.join(", "),
                if grp.count > 8 { ", ..." } else { "" }
            );
            write_frames(&mut out, &grp.frames, &grp.created_by);
        }
        out
    }

    /// Every goroutine, one traceback each, as Go's `/debug/pprof/goroutine?debug=2` writes
    /// them (without the arguments, which gotrace does not read).
    pub fn render_goroutines(&self) -> String {
        let mut out = String::new();
        for g in &self.goroutines {
            let _ = writeln!(
                out,
                "goroutine {} [{}{}]:",
                g.goid,
                g.state,
                wait_text(g.waiting_s)
            );
            write_frames(&mut out, &g.frames, &g.created_by);
        }
        out
    }
}

fn write_frames(out: &mut String, frames: &[DumpFrame], created: &Option<CreatedBy>) {
    if frames.is_empty() {
        out.push_str("\t(stack unavailable: running on another thread)\n");
    }
    for f in frames {
        let _ = writeln!(out, "{}(...)", f.function);
        match f.offset {
            Some(o) => {
                let _ = writeln!(out, "\t{}:{} +{o:#x}", f.file, f.line);
            }
            None => {
                let _ = writeln!(out, "\t{}:{}", f.file, f.line);
            }
        }
    }
    if let Some(c) = created {
        let parent = c
            .parent_goid
            .map(|p| format!(" in goroutine {p}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "created by {}{parent}\n\t{}:{} +{:#x}",
            c.site.function, c.site.file, c.site.line, c.site.offset
        );
    }
    out.push('\n');
}

/// ", 3 minutes" like Go (from one minute on), seconds below that.
fn wait_text(s: Option<f64>) -> String {
    match s {
        Some(s) if s >= 60.0 => format!(", {} minutes", (s / 60.0) as u64),
        Some(s) if s >= 1.0 => format!(", {s:.0}s"),
        _ => String::new(),
    }
}
