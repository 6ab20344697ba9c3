//! No allocation path is missed, whatever the Go release: Go 1.24 split mallocgc into one
//! function per kind of object and 1.27 calls size-specialised mallocs directly. The fixture
//! makes exactly N allocations of each kind (tiny, small, small with pointers, with a malloc
//! header, large).

use std::{collections::HashMap, time::Duration};

use anyhow::Result;
use gotrace::{probes::ProbeSelection, symbols::Symbolizer, AttachOptions};
use gotrace_tests::{bpf, fixtures, trace, GoProcess, Toolchain, Variant};
use tracer_common::ProbeKind;

const N: u64 = 1000;
const KINDS: [&str; 5] = [
    "main.allocTiny",
    "main.allocSmallNoscan",
    "main.allocSmallScan",
    "main.allocSmallScanHeader",
    "main.allocLarge",
];

/// Go's own sampler at rate 1 records every allocation: the heap profile gotrace reads must
/// count exactly N per kind.
fn sampler_counts_every_path(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let exe = fixtures::build("allockinds", Toolchain::find(release)?, variant)?;
    let mut proc = GoProcess::start(&exe, &["-n", &N.to_string()])?;
    let options = AttachOptions {
        probes: ProbeSelection::none(),
        sample_rate: Some(1),
        ..AttachOptions::default()
    };
    let tracing = trace::start(proc.pid(), options)?;
    proc.send("go")?;
    proc.expect_line("done", Duration::from_secs(60))?;
    let (session, _) = tracing.finish()?;
    let heap = session.model().heap.as_ref().expect("a heap profile");
    let sym = Symbolizer::new(session.target().binary.clone());
    let mut per_site: HashMap<String, u64> = HashMap::new();
    for r in &heap.records {
        let site = r
            .stack
            .iter()
            .flat_map(|pc| sym.caller_frames(*pc))
            .map(|f| f.function)
            .find(|f| !f.starts_with("runtime.") && !f.starts_with("internal/runtime/"));
        if let Some(site) = site {
            *per_site.entry(site).or_default() += r.allocs;
        }
    }
    for kind in KINDS {
        // Go's tiny allocator packs two 8-byte objects in one 16-byte block and samples blocks:
        // its own heap profile counts N/2 there. A large allocation may start a GC cycle, whose
        // new worker goroutines (g and stack) are allocated on the allocating goroutine: a few
        // more there, as in Go's own profile.
        let (expected, slack) = match kind {
            "main.allocTiny" => (N / 2, 1),
            "main.allocLarge" => (N, 16),
            _ => (N, 0),
        };
        let got = per_site.get(kind).copied().unwrap_or(0);
        assert!(
            (expected..=expected + slack).contains(&got),
            "{kind} on Go {release}: {got}, expected {expected}: {per_site:?}"
        );
    }
    proc.send("exit")?;
    proc.wait(Duration::from_secs(30))?;
    drop(session);
    lock.assert_nothing_loaded()
}

/// `--exact-alloc` probes every allocation entry point: at least the 5N allocations made,
/// and not each one twice (the runtime itself allocates a little meanwhile).
fn exact_alloc_counts_every_path(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let exe = fixtures::build("allockinds", Toolchain::find(release)?, variant)?;
    let mut proc = GoProcess::start(&exe, &["-n", &N.to_string()])?;
    let options = AttachOptions {
        probes: ProbeSelection::none().with(ProbeKind::Malloc),
        read_only: true,
        ..AttachOptions::default()
    };
    let tracing = trace::start(proc.pid(), options)?;
    proc.send("go")?;
    proc.expect_line("done", Duration::from_secs(60))?;
    let (session, _) = tracing.finish()?;
    let hits = session.hits(ProbeKind::Malloc);
    let made = KINDS.len() as u64 * N;
    assert!(
        (made..made + N).contains(&hits),
        "Go {release}: {hits} allocations seen for {made} made"
    );
    proc.send("exit")?;
    proc.wait(Duration::from_secs(30))?;
    drop(session);
    lock.assert_nothing_loaded()
}

#[test]
fn sampler_go_1_19() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    sampler_counts_every_path("1.19", Variant::Default)
}

#[test]
fn sampler_go_1_24_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    sampler_counts_every_path("1.24", Variant::Stripped)
}

#[test]
fn sampler_go_1_27_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    sampler_counts_every_path("1.27", Variant::Stripped)
}

#[test]
fn exact_alloc_go_1_19() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    exact_alloc_counts_every_path("1.19", Variant::Default)
}

#[test]
fn exact_alloc_go_1_24() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    exact_alloc_counts_every_path("1.24", Variant::Default)
}

#[test]
fn exact_alloc_go_1_27_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    exact_alloc_counts_every_path("1.27", Variant::Stripped)
}
