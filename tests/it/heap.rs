//! The heap profile gotrace reads from outside agrees with Go's own heap profile of the same
//! moment (when the program links it), and with the known truth when it does not (gotrace then
//! turns the sampler on itself). Object ages grow with every GC cycle for retained objects only.

use std::{collections::HashMap, time::Duration};

use anyhow::{bail, Context, Result};
use gotrace::{
    goruntime::heapprof::DEFAULT_RATE, probes::ProbeSelection, snapshot::Report, AttachOptions,
    Session,
};
use gotrace_tests::{bpf, children, fixtures, trace, GoProcess, Toolchain, Variant};

const PKG: &str = "gotrace.dev/fixtures/internal/heapwork.";
const MIB: f64 = 1024.0 * 1024.0;

/// Shares of in-use bytes per function and the total allocated bytes of a profile.
pub(crate) struct Shares {
    pub inuse: HashMap<String, f64>,
    pub alloc_total: f64,
}

/// What `go tool pprof -top` says of a profile file: flat in-use share per function and the
/// total of alloc_space.
pub(crate) fn pprof_shares(tc: &Toolchain, profile: &std::path::Path) -> Result<Shares> {
    let top = |index: &str| -> Result<String> {
        let out = children::output(
            tc.command()
                .args([
                    "tool",
                    "pprof",
                    "-top",
                    "-nodefraction=0",
                    "-nodecount=1000",
                ])
                .arg(format!("-sample_index={index}"))
                .arg(profile),
        )?;
        if !out.status.success() {
            bail!("go tool pprof: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?)
    };
    let mut inuse = HashMap::new();
    for line in top("inuse_space")?.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 6 && f[1].ends_with('%') {
            if let Ok(p) = f[1].trim_end_matches('%').parse::<f64>() {
                inuse.insert(f[5].to_string(), p);
            }
        }
    }
    let alloc = top("alloc_space")?;
    // "Showing nodes accounting for 368.50MB, 100% of 368.50MB total"
    let total = alloc
        .lines()
        .find_map(|l| {
            l.split(" of ")
                .nth(1)?
                .strip_suffix(" total")
                .map(str::to_string)
        })
        .context("no total in pprof output")?;
    Ok(Shares {
        inuse,
        alloc_total: parse_size(&total)?,
    })
}

fn parse_size(s: &str) -> Result<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let mult = match unit {
        "B" | "" => 1.0,
        "kB" => 1024.0,
        "MB" => MIB,
        "GB" => MIB * 1024.0,
        _ => bail!("unit {unit} in {s}"),
    };
    Ok(n.parse::<f64>()? * mult)
}

/// The same from gotrace's report: in-use share per allocation site and alloc total.
fn gotrace_shares(report: &Report) -> Shares {
    let total: f64 = report.heap.inuse_bytes as f64;
    let mut inuse = HashMap::new();
    for s in &report.heap.top {
        *inuse.entry(s.site.function.clone()).or_insert(0.0) +=
            100.0 * s.inuse_bytes as f64 / total;
    }
    Shares {
        inuse,
        alloc_total: report.heap.alloc_bytes as f64,
    }
}

fn assert_shares_close(got: &Shares, want: &HashMap<String, f64>, tolerance_pp: f64) {
    eprintln!("in-use shares: expected {want:?}, gotrace {:?}", got.inuse);
    for (func, w) in want {
        let g = got.inuse.get(func).copied().unwrap_or(0.0);
        assert!(
            (g - w).abs() <= tolerance_pp,
            "{func}: gotrace {g:.1}% vs expected {w:.1}% (all: {:?})",
            got.inuse
        );
    }
}

fn traced_heap(
    fixture: &str,
    args: &[&str],
    tc: Toolchain,
    variant: Variant,
    options: AttachOptions,
) -> Result<(Session, Report)> {
    let exe = fixtures::build(fixture, tc, variant)?;
    let mut proc = GoProcess::start(&exe, args)?;
    let tracing = trace::start(proc.pid(), options)?;
    proc.send("go")?;
    proc.expect_line("done", Duration::from_secs(120))?;
    let (session, reason) = tracing.finish()?;
    let report = session.snapshot(Some(reason))?.report;
    proc.send("exit")?;
    proc.wait(Duration::from_secs(30))?;
    Ok((session, report))
}

/// With Go's profiler linked: gotrace's view equals Go's own profile of the same cycle.
fn matches_go_own_profile(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let tc = Toolchain::find(release)?;
    let own = std::env::temp_dir().join(format!(
        "gotrace-own-heap-{}-{release}-{}.pb.gz",
        std::process::id(),
        variant.name()
    ));
    let own_arg = own.display().to_string();
    let (session, report) = traced_heap(
        "heapsitespprof",
        &["-out", &own_arg],
        tc,
        variant,
        AttachOptions::default(),
    )?;
    let sampler = session.sampler().cloned().context("sampler located")?;
    assert_eq!(
        (sampler.rate_at_attach, sampler.set_by_gotrace),
        (DEFAULT_RATE, false),
        "the program's own sampler is left alone"
    );
    let go = pprof_shares(&tc, &own)?;
    let ours = gotrace_shares(&report);
    let want: HashMap<String, f64> = go
        .inuse
        .iter()
        .filter(|(f, p)| f.starts_with(PKG) && **p >= 1.0)
        .map(|(f, p)| (f.clone(), *p))
        .collect();
    assert!(
        want.len() >= 3,
        "Go's profile shows the retaining sites: {:?}",
        go.inuse
    );
    assert_shares_close(&ours, &want, 5.0);
    let ratio = ours.alloc_total / go.alloc_total;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "alloc total gotrace {} vs Go {}",
        ours.alloc_total,
        go.alloc_total
    );
    drop(session);
    lock.assert_nothing_loaded()
}

/// Without it: gotrace turns the sampler on; compare with the sizes the fixture is known to
/// retain and allocate.
fn matches_truth_when_sampler_off(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let tc = Toolchain::find(release)?;
    // 64 KiB instead of Go's 512 KiB: ~8x the samples, so the comparison with the exact truth
    // is not at the mercy of sampling noise (a few hundred samples per site).
    let options = AttachOptions {
        sample_rate: Some(64 * 1024),
        ..AttachOptions::default()
    };
    let (session, report) = traced_heap("heapsites", &[], tc, variant, options)?;
    let sampler = session.sampler().cloned().context("sampler located")?;
    assert_eq!(
        (sampler.rate_at_attach, sampler.rate, sampler.set_by_gotrace),
        (0, 64 * 1024, true)
    );
    let (big, medium, small, churn) = (64.0, 32.0, 16.0, 256.0);
    let retained = big + medium + small;
    let want = HashMap::from([
        (format!("{PKG}retainBig"), 100.0 * big / retained),
        (format!("{PKG}retainMedium"), 100.0 * medium / retained),
        (format!("{PKG}retainSmall"), 100.0 * small / retained),
    ]);
    let ours = gotrace_shares(&report);
    assert_shares_close(&ours, &want, 5.0);
    let truth = (retained + churn) * MIB;
    let ratio = ours.alloc_total / truth;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "alloc total {} vs truth {truth}",
        ours.alloc_total
    );
    drop(session);
    lock.assert_nothing_loaded()
}

#[test]
fn go_own_profile_1_19() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    matches_go_own_profile("1.19", Variant::Default)
}

#[test]
fn go_own_profile_1_24_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    matches_go_own_profile("1.24", Variant::Stripped)
}

#[test]
fn go_own_profile_1_27_stripped_pie() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    matches_go_own_profile("1.27", Variant::StrippedPie)
}

#[test]
fn sampler_off_1_19_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    matches_truth_when_sampler_off("1.19", Variant::Stripped)
}

#[test]
fn sampler_off_1_24() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    matches_truth_when_sampler_off("1.24", Variant::Default)
}

#[test]
fn sampler_off_1_27_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    matches_truth_when_sampler_off("1.27", Variant::Stripped)
}

/// --read-only: nothing is written, so a program whose sampler is off has no heap profile,
/// and the report says why.
#[test]
fn read_only_never_writes() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let options = AttachOptions {
        read_only: true,
        probes: ProbeSelection::none(),
        ..AttachOptions::default()
    };
    let (session, report) = traced_heap(
        "heapsites",
        &[],
        Toolchain::find("1.27")?,
        Variant::Default,
        options,
    )?;
    let s = session.sampler().cloned().context("sampler located")?;
    assert_eq!((s.rate_at_attach, s.rate, s.set_by_gotrace), (0, 0, false));
    assert!(report
        .heap
        .unavailable
        .as_deref()
        .unwrap_or("")
        .contains("--read-only"));
    assert_eq!(report.heap.inuse_bytes, 0);
    drop(session);
    lock.assert_nothing_loaded()
}

/// A batch retained once gets one GC cycle older with every cycle; churned objects stay young.
#[test]
fn object_age_grows_with_each_gc() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    const CYCLES: u32 = 8;
    let options = AttachOptions {
        sample_rate: Some(16 * 1024),
        tick: Duration::from_millis(50),
        probes: ProbeSelection::none(),
        ..AttachOptions::default()
    };
    let (session, report) = traced_heap(
        "heapage",
        &["-cycles", &CYCLES.to_string()],
        Toolchain::find("1.27")?,
        Variant::Stripped,
        options,
    )?;
    let site = |name: &str| {
        report
            .heap
            .top
            .iter()
            .find(|s| s.site.function == name)
            .and_then(|s| s.age.clone())
            .with_context(|| format!("{name} with ages in {:#?}", report.heap.top))
    };
    let batch = site("main.retainBatch")?;
    // Retained before the first of the CYCLES cycles: it survived all of them (the first look
    // may come one cycle late).
    assert!(
        batch.oldest >= CYCLES - 1 && batch.oldest <= CYCLES,
        "{batch:?}"
    );
    assert!(
        batch.cycles[3] + batch.cycles[4] >= batch.objects() * 9 / 10,
        "nearly all in 4-15: {batch:?}"
    );
    assert_eq!(batch.before_attach, 0);
    if let Ok(churn) = site("main.churnOnce") {
        assert!(churn.oldest <= 1, "churned objects die young: {churn:?}");
    }
    assert!(
        report.gc.forced >= CYCLES,
        "every runtime.GC() seen: {:?}",
        report.gc
    );
    drop(session);
    lock.assert_nothing_loaded()
}

#[test]
fn gc_telemetry_counts_forced_cycles() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let options = AttachOptions {
        tick: Duration::from_millis(50),
        probes: ProbeSelection::none(),
        ..AttachOptions::default()
    };
    let (session, report) = traced_heap(
        "heapage",
        &["-cycles", "5", "-pause", "150ms"],
        Toolchain::find("1.19")?,
        Variant::Stripped,
        options,
    )?;
    let gc = &report.gc;
    assert!(gc.forced >= 5, "runtime.GC() five times: {gc:?}");
    assert_eq!(gc.cycles, gc.forced + gc.automatic);
    let end = gc.at_end.context("gc state")?;
    assert!(
        end.heap_in_use >= 16 << 20,
        "the 16 MiB batch is in use: {end:?}"
    );
    assert!(end.heap_goal > 0 && end.total_alloc > end.total_free);
    assert!(gc.per_cycle.len() >= 3, "{:?}", gc.per_cycle);
    drop(session);
    lock.assert_nothing_loaded()
}
