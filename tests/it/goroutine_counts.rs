//! Goroutine counts as users compare them: the live line, `report.json` and
//! `goroutine.pb.gz` of `gotrace attach` say what `runtime.NumGoroutine` and Go's own goroutine
//! profile say about the same quiet process (the `counts` fixture), the runtime's own
//! goroutines counted apart.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result};
use gotrace::pprof::{self, proto};
use gotrace_tests::{bpf, children, fixtures, go, gotrace_bin, GoProcess, Toolchain, Variant};
use serde_json::Value;

/// Goroutines per innermost `main.` function of their stacks.
pub(crate) fn by_main_function(p: &proto::Profile) -> BTreeMap<String, i64> {
    let name = |id: u64| {
        let f = p.function.iter().find(|f| f.id == id).unwrap();
        p.string_table[f.name as usize].clone()
    };
    let mut out = BTreeMap::new();
    for s in &p.sample {
        let main = s
            .location_id
            .iter()
            .flat_map(|id| &p.location.iter().find(|l| l.id == *id).unwrap().line)
            .map(|l| name(l.function_id))
            .find(|f| f.starts_with("main."))
            .unwrap_or_default();
        *out.entry(main).or_default() += s.value[0];
    }
    out
}

fn counts_agree_with_go(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let exe = fixtures::build("counts", Toolchain::find(release)?, variant)?;
    let dir = fixtures::scratch_dir(&format!("counts-{release}-{}", variant.name()))?;
    let go_profile = dir.join("go.pb.gz");
    let out = dir.join("out");
    let mut proc = GoProcess::start(&exe, &["-out", &go_profile.display().to_string()])?;

    let mut gotrace = children::spawn(
        Command::new(gotrace_bin())
            .args(["attach", &proc.pid().to_string()])
            .args(["--duration", "2s", "--interval", "200ms", "--out"])
            .arg(&out)
            .stderr(Stdio::piped()),
    )?;
    let stderr: Vec<String> = BufReader::new(gotrace.stderr.take().unwrap())
        .lines()
        .map_while(|l| l.ok())
        .collect();
    assert!(gotrace.wait()?.success(), "{stderr:#?}");

    proc.send("count")?;
    let num_goroutine: u64 = proc
        .expect_line("count ", Duration::from_secs(10))?
        .strip_prefix("count ")
        .unwrap()
        .parse()?;
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json"))?)?;
    let g = &report["goroutines"];
    let system = g["system_at_end"].as_u64().context("system_at_end")?;
    assert_eq!(g["live_at_start"], num_goroutine, "{g:#}");
    assert_eq!(g["live_at_end"], num_goroutine, "{g:#}");
    assert_eq!(g["system_at_start"], system, "{g:#}");
    // GC workers, the finalizer goroutine, the sweeper, the scavenger, forcegc at least.
    assert!(system >= 4, "{g:#}");

    // Every live line: `goroutines <NumGoroutine> (+<system> system, stacks ...)`.
    let live: Vec<&String> = stderr
        .iter()
        .filter(|l| l.contains(" │ goroutines "))
        .collect();
    assert!(!live.is_empty(), "{stderr:#?}");
    for l in live {
        assert!(
            l.contains(&format!(
                " │ goroutines {num_goroutine} (+{system} system, stacks "
            )),
            "NumGoroutine {num_goroutine}, {system} system: {l}"
        );
    }

    // The goroutine profile: as many goroutines as Go's own, in the same functions.
    let ours = pprof::decode(&std::fs::read(out.join("goroutine.pb.gz"))?)?;
    let theirs = pprof::decode(&std::fs::read(&go_profile)?)?;
    let (ours, theirs) = (by_main_function(&ours), by_main_function(&theirs));
    assert_eq!(ours, theirs);
    assert_eq!(ours.values().sum::<i64>(), num_goroutine as i64, "{ours:?}");
    assert_eq!(ours.get("main.waitForever"), Some(&7), "{ours:?}");

    drop(proc);
    let _ = std::fs::remove_dir_all(&dir);
    lock.assert_nothing_loaded()
}

#[test]
fn counts_agree_with_go_newest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    counts_agree_with_go(go::NEWEST, Variant::Default)
}

#[test]
fn counts_agree_with_go_oldest_stripped_pie() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    counts_agree_with_go(go::OLDEST, Variant::StrippedPie)
}
