//! `gotrace diff`, checked against `go tool pprof -top -diff_base`: two heap profiles of a
//! leaking fixture taken seconds apart, once by `gotrace record` and once by the fixture's own
//! runtime/pprof, then the same pair as snapshots of the agent's history (`--target ID
//! --since`); and every bad input refused with one line.
//!
//! Nothing here loads eBPF.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, SystemTime},
};

use anyhow::{ensure, Context, Result};
use gotrace::{
    agent::history::{History, HistoryConfig, Kind},
    pprof,
    probes::ProbeSelection,
    AttachOptions,
};
use gotrace_tests::{children, fixtures, go, gotrace_bin, trace, GoProcess, Toolchain, Variant};
use serde_json::Value;

/// The fixture's leaking function.
const LEAK: &str = "main.handle";

/// An argument: a path or a string.
type Arg<'a> = &'a dyn AsRef<OsStr>;

fn gotrace(args: &[Arg<'_>]) -> Result<Output> {
    Ok(children::output(
        Command::new(gotrace_bin()).args(args.iter().map(|a| a.as_ref())),
    )?)
}

/// `gotrace diff ARGS...` that must succeed: its stdout.
fn diff(args: &[Arg<'_>]) -> Result<String> {
    let mut all: Vec<Arg<'_>> = vec![&"diff"];
    all.extend(args);
    let out = gotrace(&all)?;
    ensure!(
        out.status.success(),
        "gotrace diff failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

fn diff_json(base: &Path, new: &Path, index: &str) -> Result<Value> {
    let out = diff(&[&base, &new, &"--json", &"--sample-index", &index])?;
    Ok(serde_json::from_str(&out)?)
}

/// What `go tool pprof -top -diff_base BASE NEW` says, in exact units (`-unit=B`, every node).
struct PprofTop {
    /// "Showing nodes accounting for X": NEW minus BASE over every node.
    accounted: i64,
    /// "of Z total": the base's total.
    total: i64,
    /// (function, flat) in pprof's order.
    rows: Vec<(String, i64)>,
}

/// `13943462B` → 13943462 (counts get the same suffix with `-unit=B`).
fn value(s: &str) -> Result<i64> {
    s.trim_end_matches('B')
        .parse()
        .with_context(|| format!("not a pprof value: {s:?}"))
}

fn pprof_diff(tc: Toolchain, base: &Path, new: &Path, index: &str) -> Result<PprofTop> {
    let out = children::output(
        tc.command()
            .args(["tool", "pprof", "-top", "-unit=B", "-nodefraction=0"])
            .arg(format!("-sample_index={index}"))
            .arg("-diff_base")
            .arg(base)
            .arg(new),
    )?;
    ensure!(
        out.status.success(),
        "go tool pprof -diff_base failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let showing = text
        .lines()
        .find_map(|l| l.strip_prefix("Showing nodes accounting for "))
        .with_context(|| format!("no totals in {text}"))?;
    // "13943462B, 100.24% of 13910587B total"
    let words: Vec<&str> = showing.split_whitespace().collect();
    ensure!(words.len() >= 5 && words[4] == "total", "{showing}");
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.trim_start().starts_with("flat") {
            in_table = true;
            continue;
        }
        if in_table {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 6 {
                // pprof marks a function that was inlined where it appears.
                let name = f[5..].join(" ");
                let name = name.strip_suffix(" (inline)").unwrap_or(&name);
                rows.push((name.to_string(), value(f[0])?));
            }
        }
    }
    Ok(PprofTop {
        accounted: value(words[0].trim_end_matches(','))?,
        total: value(words[3])?,
        rows,
    })
}

/// `gotrace diff --json` against pprof for one pair: the same totals, the leak first in
/// both with the same growth, and every function pprof lists with the flat change gotrace
/// gives it.
fn agrees_with_pprof(tc: Toolchain, base: &Path, new: &Path, index: &str) -> Result<Value> {
    let ctx = format!("{} -> {} ({index})", base.display(), new.display());
    let ours = diff_json(base, new, index)?;
    let theirs = pprof_diff(tc, base, new, index)?;
    assert_eq!(ours["sample_type"], index, "{ctx}");
    assert_eq!(ours["base"]["total"], theirs.total, "{ctx}: base total");
    assert_eq!(ours["delta"], theirs.accounted, "{ctx}: NEW minus BASE");
    assert_eq!(
        ours["new"]["total"].as_i64().unwrap() - ours["base"]["total"].as_i64().unwrap(),
        theirs.accounted,
        "{ctx}"
    );
    let functions = ours["functions"].as_array().context("functions")?;
    // pprof sorts by size, gotrace by growth: the same first row when the largest change grew.
    if theirs.rows[0].1 > 0 {
        assert_eq!(
            functions[0]["function"],
            theirs.rows[0].0.as_str(),
            "{ctx}: {ours:#}"
        );
        assert_eq!(functions[0]["delta"], theirs.rows[0].1, "{ctx}");
    }
    // In bytes the leak outgrows everything; in objects the fixture's own profile writer
    // (thousands of tiny allocations) may not.
    if index.ends_with("_space") {
        assert_eq!(theirs.rows[0].0, LEAK, "{ctx}: pprof's first row");
        assert_eq!(functions[0]["function"], LEAK, "{ctx}: {ours:#}");
    }
    for (function, flat) in theirs.rows.iter().filter(|(_, flat)| *flat != 0) {
        let row = functions
            .iter()
            .find(|f| f["function"] == function.as_str())
            .with_context(|| format!("{ctx}: pprof lists {function}, gotrace does not"))?;
        assert_eq!(row["delta"], *flat, "{ctx}: {function}");
    }
    let nonzero = theirs.rows.iter().filter(|(_, flat)| *flat != 0).count();
    assert_eq!(functions.len(), nonzero, "{ctx}: {ours:#}");
    let leak = functions
        .iter()
        .find(|f| f["function"] == LEAK)
        .with_context(|| format!("{ctx}: no {LEAK}: {ours:#}"))?;
    assert!(leak["delta"].as_i64().unwrap() > 0, "{ctx}: {ours:#}");
    assert!(
        leak["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("heapgrowpprof/main.go")),
        "{ctx}: {ours:#}"
    );
    Ok(ours)
}

/// The fixture, built once: the kit names its temporary build after the test process, so the
/// two tests of this module must not build it at the same time.
fn fixture(tc: Toolchain) -> Result<PathBuf> {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    fixtures::build("heapgrowpprof", tc, Variant::Default)
}

/// Two heap profiles of the leak, seconds apart, by gotrace and by Go.
struct Leak {
    tc: Toolchain,
    fixture: GoProcess,
    dir: PathBuf,
    /// `gotrace record`'s, then Go's own, each (BASE, NEW).
    gotrace: (PathBuf, PathBuf),
    go: (PathBuf, PathBuf),
}

fn leak(tag: &str) -> Result<Leak> {
    let tc = Toolchain::find(go::NEWEST)?;
    let exe = fixture(tc)?;
    let mut fixture = GoProcess::start(&exe, &[])?;
    let dir = fixtures::scratch_dir(tag)?;
    let mut take = |name: &str| -> Result<(PathBuf, PathBuf)> {
        let ours = dir.join(format!("{name}.pb.gz"));
        let pid = fixture.pid().to_string();
        let out = gotrace(&[
            &"record",
            &pid,
            &"--duration",
            &"1s",
            &"--quiet",
            &"-o",
            &ours,
        ])?;
        ensure!(
            out.status.success(),
            "gotrace record: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let go = dir.join(format!("go-{name}.pb.gz"));
        fixture.send(&format!("heap {}", go.display()))?;
        fixture.expect_line("wrote", Duration::from_secs(30))?;
        Ok((ours, go))
    };
    std::thread::sleep(Duration::from_secs(1));
    let (base, go_base) = take("base")?;
    // ~5 MiB a second: a few seconds is a growth no sampling noise hides.
    std::thread::sleep(Duration::from_secs(3));
    let (new, go_new) = take("new")?;
    Ok(Leak {
        tc,
        fixture,
        dir,
        gotrace: (base, new),
        go: (go_base, go_new),
    })
}

#[test]
fn a_leak_grows_as_pprof_says() -> Result<()> {
    let _children = children::guard();
    let leak = leak("diff")?;
    let (base, new) = &leak.gotrace;
    for index in [
        "inuse_space",
        "inuse_objects",
        "alloc_space",
        "alloc_objects",
    ] {
        agrees_with_pprof(leak.tc, base, new, index)?;
    }
    let ours = agrees_with_pprof(leak.tc, &leak.go.0, &leak.go.1, "inuse_space")?;
    assert!(
        ours["delta"].as_i64().unwrap() >= 8 << 20,
        "the leak grew by ~5 MiB a second: {ours:#}"
    );

    // The table and the flamegraph.
    let svg = leak.dir.join("grew.svg");
    let table = diff(&[base, new, &"--out", &svg])?;
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("inuse_space (bytes), NEW minus BASE"),
        "{table}"
    );
    assert!(
        lines[1].trim_start().starts_with("base") && lines[1].contains("base.pb.gz"),
        "{table}"
    );
    assert!(
        lines[2].trim_start().starts_with("new") && lines[2].contains("new.pb.gz"),
        "{table}"
    );
    let delta: Vec<&str> = lines[3].split_whitespace().collect();
    assert!(delta[0] == "delta" && delta[1].starts_with('+'), "{table}");
    assert!(
        lines[4].contains("DELTA") && lines[4].contains("FUNCTION"),
        "{table}"
    );
    assert!(
        lines[5].trim_start().starts_with('+') && lines[5].contains(LEAK),
        "{table}"
    );
    assert!(lines[5].contains("heapgrowpprof/main.go:"), "{table}");
    let text = std::fs::read_to_string(&svg)?;
    // inferno's SVG declares the SVG 1.1 DTD.
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(&text, options)
        .context("the SVG is not well-formed XML")?;
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    // The leak's frame: NEW's width, and its growth as a share of NEW (inferno's
    // differential tooltip, "name (N bytes, P%; +D%)").
    let leak_frame = doc
        .descendants()
        .filter(|n| n.has_tag_name("title"))
        .filter_map(|n| n.text())
        .find(|t| t.starts_with(&format!("{LEAK} (")))
        .context("no frame of the leak in the SVG")?;
    assert!(leak_frame.contains("; +"), "{leak_frame}");
    // Grown frames are red: rgb(255,c,c).
    assert!(text.contains("fill=\"rgb(255,"), "no red frame in the SVG");
    // --out never replaces what is there through a symlink, and an existing file is replaced
    // atomically: a second run writes the same picture.
    diff(&[base, new, &"--out", &svg])?;
    assert!(std::fs::read_to_string(&svg)?.contains(LEAK));

    // An output directory stands for its heap.pb.gz; gotrace's and Go's profiles mix.
    let out_dir = leak.dir.join("attach-out");
    std::fs::create_dir(&out_dir)?;
    std::fs::copy(base, out_dir.join("heap.pb.gz"))?;
    assert_eq!(
        diff_json(&out_dir, new, "inuse_space")?["delta"],
        diff_json(base, new, "inuse_space")?["delta"]
    );
    let mixed = diff_json(base, &leak.go.1, "inuse_space")?;
    assert_eq!(mixed["functions"][0]["function"], LEAK, "{mixed:#}");

    history(&leak)?;
    Ok(())
}

/// The same two profiles as snapshots of the agent's history: `--since 1h` takes the last
/// snapshot at least an hour old, not an older or a younger one.
fn history(leak: &Leak) -> Result<()> {
    let tracing = trace::start(
        leak.fixture.pid(),
        AttachOptions {
            probes: ProbeSelection::none(),
            tick: Duration::from_millis(250),
            ..AttachOptions::default()
        },
    )?;
    std::thread::sleep(Duration::from_millis(1500));
    let (session, _) = tracing.finish()?;
    let mut snapshot = session.snapshot(None)?;
    let state = leak.dir.join("state");
    let mut history = History::open(&HistoryConfig {
        state_dir: state.clone(),
        retention: Duration::from_secs(7 * 86_400),
        max_disk: 1 << 30,
        no_history: false,
    })?;
    let id = format!("{}-1234", leak.fixture.pid());
    let read = |p: &Path| -> Result<_> { Ok(pprof::decode(&std::fs::read(p)?)?) };
    let (base, new) = &leak.gotrace;
    let now = SystemTime::now();
    let minutes = |m: u64| now - Duration::from_secs(60 * m);
    // (profile, taken): only the 65-minute-old one is the base of --since 1h.
    for (profile, at) in [
        (new, minutes(120)),
        (base, minutes(65)),
        (new, minutes(50)),
        (new, minutes(1)),
    ] {
        snapshot.heap = Some(read(profile)?);
        history.record_at(&id, &[], &snapshot, Kind::Interval, at)?;
    }
    drop(history);
    let from_history: Value = serde_json::from_str(&diff(&[
        &"--target",
        &id,
        &"--state-dir",
        &state,
        &"--since",
        &"1h",
        &"--json",
    ])?)?;
    let from_files = diff_json(base, new, "inuse_space")?;
    assert_eq!(
        from_history["delta"], from_files["delta"],
        "{from_history:#}"
    );
    assert_eq!(from_history["functions"], from_files["functions"]);
    let label = from_history["base"]["label"].as_str().unwrap();
    assert!(label.starts_with(&id), "{label}");

    // Nothing three hours old: one line, naming the oldest snapshot.
    let out = gotrace(&[
        &"diff",
        &"--target",
        &id,
        &"--state-dir",
        &state,
        &"--since",
        &"3h",
    ])?;
    let err = one_line_error(&out)?;
    assert!(
        err.contains("no snapshot 3h old") && err.contains("shorter --since"),
        "{err}"
    );
    Ok(())
}

/// The stderr of a failed run: exactly one line, and the exit code 1 (2 is for usage).
fn one_line_error(out: &Output) -> Result<String> {
    let stderr = String::from_utf8(out.stderr.clone())?;
    ensure!(
        out.status.code() == Some(1),
        "exit {:?}: {stderr}",
        out.status
    );
    ensure!(stderr.lines().count() == 1, "not one line: {stderr}");
    ensure!(out.stdout.is_empty(), "printed a table anyway");
    Ok(stderr)
}

#[test]
fn bad_inputs_get_one_line() -> Result<()> {
    let _children = children::guard();
    let tc = Toolchain::find(go::NEWEST)?;
    let exe = fixture(tc)?;
    let mut fixture = GoProcess::start(&exe, &[])?;
    let dir = fixtures::scratch_dir("diff-bad")?;
    // Not heap.pb.gz: `dir` must not pass for an output directory.
    let heap = dir.join("go-heap.pb.gz");
    let goroutines = dir.join("goroutine.pb.gz");
    fixture.send(&format!("heap {}", heap.display()))?;
    fixture.expect_line("wrote", Duration::from_secs(30))?;
    fixture.send(&format!("goroutine {}", goroutines.display()))?;
    fixture.expect_line("wrote", Duration::from_secs(30))?;
    let text = dir.join("notes.txt");
    std::fs::write(&text, "heap profile: 1: 2 [3: 4] @ heap/1048576\n")?;
    let empty = dir.join("empty.pb.gz");
    std::fs::write(&empty, "")?;
    let missing = dir.join("missing.pb.gz");
    let run = |args: &[&Path]| -> Result<Output> {
        let mut all: Vec<Arg<'_>> = vec![&"diff"];
        all.extend(args.iter().map(|a| a as Arg<'_>));
        gotrace(&all)
    };
    let cases: [(&[&Path], &str); 6] = [
        (&[&missing, &heap], "missing.pb.gz"),
        (
            &[&heap, &goroutines],
            "is not a heap profile: it has no inuse_space",
        ),
        (&[&text, &heap], "notes.txt"),
        (&[&heap, &empty], "is empty, not a profile"),
        (&[&dir.join("sub"), &heap], "sub"),
        (&[&heap, &dir], "directory without heap.pb.gz"),
    ];
    std::fs::create_dir(dir.join("sub"))?;
    for (args, expect) in cases {
        let err = one_line_error(&run(args)?)?;
        assert!(
            err.starts_with("gotrace: error: ") && err.contains(expect),
            "{args:?}: {err}"
        );
    }
    // The goroutine profile's own sample types are named, so the user sees what it is.
    let err = one_line_error(&run(&[&heap, &goroutines])?)?;
    assert!(err.contains("goroutine"), "{err}");

    // --out is checked before anything is read.
    let out = gotrace(&[
        &"diff",
        &heap,
        &heap,
        &"--out",
        &dir.join("no/such/dir.svg"),
    ])?;
    one_line_error(&out)?;

    // History: no history at all, an unknown target.
    let err = one_line_error(&gotrace(&[
        &"diff",
        &"--target",
        &"1-2",
        &"--since",
        &"1h",
        &"--state-dir",
        &dir,
    ])?)?;
    assert!(err.contains("no history in"), "{err}");
    std::fs::create_dir(dir.join("history"))?;
    let err = one_line_error(&gotrace(&[
        &"diff",
        &"--target",
        &"1-2",
        &"--since",
        &"1h",
        &"--state-dir",
        &dir,
    ])?)?;
    assert!(err.contains("no target \"1-2\""), "{err}");

    // Bad usage is clap's: exit 2.
    for args in [
        vec!["diff"],
        vec!["diff", "a.pb.gz"],
        vec!["diff", "a", "b", "--sample-index", "cpu"],
        vec!["diff", "a", "b", "--target", "1-2", "--since", "1h"],
        vec!["diff", "--target", "1-2"],
    ] {
        let out = children::output(Command::new(gotrace_bin()).args(&args))?;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    fixture.send("exit")?;
    fixture.wait(Duration::from_secs(30))?;
    Ok(())
}
