//! `gotrace dump` of a live process equals Go's own debug=2 goroutine dump taken at the same
//! moment: same goroutines, states, wait reasons, frames and creation sites.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context, Result};
use gotrace_tests::{fixtures, go, GoProcess, Toolchain, Variant};

/// One goroutine as a dump prints it.
#[derive(Debug, PartialEq, Eq)]
struct G {
    state: String,
    /// (function, file, line), innermost first.
    frames: Vec<(String, String, u32)>,
    created_by: Option<(String, String, u32)>,
}

/// Parses Go's traceback text (debug=2 goroutine profile).
fn parse_go_dump(text: &str) -> Result<BTreeMap<u64, G>> {
    let mut out = BTreeMap::new();
    for block in text.split("\n\n").filter(|b| b.starts_with("goroutine ")) {
        let mut lines = block.lines();
        let header = lines.next().unwrap();
        let goid: u64 = header.split_whitespace().nth(1).context("goid")?.parse()?;
        let state = header[header.find('[').context("[")? + 1..header.rfind(']').context("]")?]
            .split(", ")
            .next()
            .unwrap()
            .to_string();
        let mut frames = Vec::new();
        let mut created_by = None;
        while let Some(call) = lines.next() {
            let loc = lines.next().context("location line")?.trim();
            let (file, rest) = loc.rsplit_once(':').context("file:line")?;
            let line: u32 = rest.split_whitespace().next().unwrap().parse()?;
            if let Some(c) = call.strip_prefix("created by ") {
                let func = c.split(" in goroutine ").next().unwrap();
                created_by = Some((func.to_string(), file.to_string(), line));
            } else {
                let func = &call[..call.rfind('(').context("(")?];
                frames.push((func.to_string(), file.to_string(), line));
            }
        }
        out.insert(
            goid,
            G {
                state,
                frames,
                created_by,
            },
        );
    }
    Ok(out)
}

fn same_as_go(release: &str, variant: Variant) -> Result<()> {
    let exe = fixtures::build("goroutines", Toolchain::find(release)?, variant)?;
    let own = std::env::temp_dir().join(format!(
        "gotrace-go-dump-{}-{release}-{}.txt",
        std::process::id(),
        variant.name()
    ));
    let mut proc = GoProcess::start(&exe, &["-out", &own.display().to_string()])?;
    proc.send("dump")?;
    proc.expect_line("dumped", Duration::from_secs(30))?;
    let ours = gotrace::dump::take(proc.pid(), false)?;
    let go = parse_go_dump(&std::fs::read_to_string(&own)?)?;
    // Goroutine 1 wrote Go's dump (running then, reading stdin now): the others have not moved.
    let main_goid = 1;
    let go_ids: Vec<u64> = go.keys().copied().filter(|g| *g != main_goid).collect();
    let our_ids: Vec<u64> = ours
        .goroutines
        .iter()
        .map(|g| g.goid)
        .filter(|g| *g != main_goid)
        .collect();
    assert_eq!(our_ids, go_ids, "same goroutines");
    assert!(
        go_ids.len() >= 27,
        "the fixture parks 27 goroutines: {go_ids:?}"
    );
    for g in ours.goroutines.iter().filter(|g| g.goid != main_goid) {
        let ours = G {
            state: g.state.to_string(),
            frames: g
                .frames
                .iter()
                .map(|f| (f.function.clone(), f.file.clone(), f.line))
                .collect(),
            created_by: g
                .created_by
                .as_ref()
                .map(|c| (c.site.function.clone(), c.site.file.clone(), c.site.line)),
        };
        assert_eq!(
            ours, go[&g.goid],
            "goroutine {} differs from Go's dump",
            g.goid
        );
    }
    // Grouped: 9 kinds x 3 goroutines; the `deep` ones differ in depth, hence their own groups.
    for kind in ["main.lockForever", "main.recvForever", "main.condForever"] {
        assert!(
            ours.groups
                .iter()
                .any(|grp| grp.count == 3 && grp.frames.iter().any(|f| f.function == kind)),
            "one group of 3 for {kind}: {:#?}",
            ours.groups
        );
    }
    proc.send("exit")?;
    proc.wait(Duration::from_secs(30))?;
    Ok(())
}

#[test]
fn same_as_go_dump_oldest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    same_as_go(go::OLDEST, Variant::Default)
}

#[test]
fn same_as_go_dump_oldest_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    same_as_go(go::OLDEST, Variant::Stripped)
}

#[test]
fn same_as_go_dump_newest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    same_as_go(go::NEWEST, Variant::Default)
}

#[test]
fn same_as_go_dump_newest_stripped_pie() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    same_as_go(go::NEWEST, Variant::StrippedPie)
}

/// `go f(x)` starts in a `gowrapN` closure from Go 1.22: gotrace names `f`.
#[test]
fn goroutine_function_sees_through_gowrap() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let exe = fixtures::build(
        "goroutines",
        Toolchain::find(go::NEWEST)?,
        Variant::Stripped,
    )?;
    let binary = gotrace::binary::GoBinary::open(&exe, "goroutines")?;
    let wrappers: Vec<_> = binary
        .pclntab()
        .funcs()
        .filter(|f| f.name.starts_with("main.main.gowrap"))
        .collect();
    assert!(wrappers.len() >= 4, "{wrappers:?}");
    for w in wrappers {
        let f = gotrace::goruntime::traceback::goroutine_function(&binary, w.entry);
        assert!(
            [
                "main.recvForever",
                "main.sendForever",
                "main.selectForever",
                "main.deep"
            ]
            .contains(&f.as_str()),
            "{} -> {f}",
            w.name
        );
    }
    Ok(())
}
