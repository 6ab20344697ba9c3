//! Names as users compare them with Go's own: a generic function's allocation site as Go's
//! heap profile names it (`go tool pprof -top` of the program's own profile), one summary line
//! per site however many stacks reach it, the main goroutine and a C thread's goroutine
//! labelled for what they are (not `runtime.newproc`, not `0x0`), and `inspect`'s columns.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result};
use gotrace::{
    probes::ProbeSelection,
    symbols::{CGO_CALLBACK, CGO_CALLBACK_SITE, MAIN_GOROUTINE_SITE},
    AttachOptions,
};
use gotrace_tests::{
    bpf, children, fixtures, go, gotrace_bin, trace::Run, GoProcess, Toolchain, Variant,
};
use serde_json::Value;

fn generic_sites_named_as_go(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let tc = Toolchain::find(release)?;
    let exe = fixtures::build("generics", tc, variant)?;
    let dir = fixtures::scratch_dir(&format!("names-{release}-{}", variant.name()))?;
    let go_profile = dir.join("go.pb.gz");
    let out = dir.join("out");
    let mut proc = GoProcess::start(&exe, &["-out", &go_profile.display().to_string()])?;
    let mut gotrace = children::spawn(
        Command::new(gotrace_bin())
            .args([
                "attach",
                &proc.pid().to_string(),
                "--duration",
                "3s",
                "--out",
            ])
            .arg(&out)
            .stderr(Stdio::piped()),
    )?;
    let mut stderr = BufReader::new(gotrace.stderr.take().unwrap()).lines();
    let first = stderr.next().context("gotrace printed nothing")??;
    assert!(first.starts_with("gotrace: attached to"), "{first}");
    proc.send("go")?;
    proc.expect_line("dumped", Duration::from_secs(30))?;
    let rest: Vec<String> = stderr.map_while(|l| l.ok()).collect();
    assert!(gotrace.wait()?.success(), "{rest:#?}");

    // Go's own names for the generic function's sites.
    let top = children::output(
        tc.command()
            .args(["tool", "pprof", "-top"])
            .arg(&go_profile),
    )?;
    assert!(
        top.status.success(),
        "{}",
        String::from_utf8_lossy(&top.stderr)
    );
    let top = String::from_utf8(top.stdout)?;
    let theirs: BTreeSet<String> = top
        .lines()
        .map(|l| l.split_whitespace().skip(5).collect::<Vec<_>>().join(" "))
        .filter(|f| f.starts_with("main.newEntryNode"))
        .collect();
    assert!(!theirs.is_empty(), "{top}");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json"))?)?;
    let ours: BTreeSet<String> = report["heap"]["top"]
        .as_array()
        .context("heap.top")?
        .iter()
        .filter_map(|s| s["site"]["function"].as_str())
        .filter(|f| f.starts_with("main.newEntryNode"))
        .map(str::to_string)
        .collect();
    assert_eq!(ours, theirs, "{top}");

    // The summary: a site a line, though fromNames and fromAliases reach one site.
    let sites: Vec<&String> = rest
        .iter()
        .skip_while(|l| !l.contains("top sites:"))
        .skip(1)
        .take_while(|l| l.contains(" allocated  "))
        .collect();
    let lines: BTreeSet<&str> = sites
        .iter()
        .map(|l| l.split(" allocated  ").nth(1).unwrap())
        .collect();
    assert_eq!(lines.len(), sites.len(), "{sites:#?}");
    assert!(
        sites.iter().any(|l| l.contains("main.newEntryNode")),
        "{sites:#?}"
    );

    drop(proc);
    let _ = std::fs::remove_dir_all(&dir);
    lock.assert_nothing_loaded()
}

#[test]
fn generic_sites_named_as_go_newest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    generic_sites_named_as_go(go::NEWEST, Variant::Default)
}

/// Go 1.21 is the first release whose profiles name a generic function by its symbol.
#[test]
fn generic_sites_named_as_go_1_21_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    generic_sites_named_as_go("1.21", Variant::Stripped)
}

/// Go 1.19's profiles print `main.newEntryNode[...]`, one function for both instantiations.
#[test]
fn generic_sites_named_as_go_oldest_pie() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    generic_sites_named_as_go(go::OLDEST, Variant::Pie)
}

/// The `counts` fixture's main goroutine and its C thread's goroutine (blocked in a call into
/// Go), in `live_by_site`: labelled, with the function each runs.
fn goroutines_without_go_statement_labelled(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let report = Run {
        fixture: "counts",
        args: &["-out", "/dev/null"],
        release,
        variant,
        options: AttachOptions {
            probes: ProbeSelection::none(),
            tick: Duration::from_millis(200),
            ..AttachOptions::default()
        },
        send_go: false,
        run_for: Duration::from_secs(1),
    }
    .report()?;
    let sites = &report.goroutines.live_by_site;
    let named = |site: &str| sites.iter().find(|s| s.site.function == site);
    let main = named(MAIN_GOROUTINE_SITE).context("main goroutine")?;
    assert_eq!(
        (main.live, main.function.as_str()),
        (1, "main.main"),
        "{sites:#?}"
    );
    let cgo = named(CGO_CALLBACK_SITE).context("C thread's goroutine")?;
    assert_eq!(
        (cgo.live, cgo.function.as_str()),
        (1, CGO_CALLBACK),
        "{sites:#?}"
    );
    for s in sites {
        assert!(
            !s.function.starts_with("0x")
                && !s.site.function.starts_with("0x")
                && !s.site.function.starts_with("runtime."),
            "{s:#?}"
        );
    }
    lock.assert_nothing_loaded()
}

#[test]
fn goroutines_without_go_statement_labelled_newest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    goroutines_without_go_statement_labelled(go::NEWEST, Variant::StrippedPie)
}

#[test]
fn goroutines_without_go_statement_labelled_oldest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    goroutines_without_go_statement_labelled(go::OLDEST, Variant::Default)
}

/// `inspect`: every variable's value in one column, apart from the longest name.
#[test]
fn inspect_columns_aligned() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let exe = fixtures::build("counts", Toolchain::find(go::NEWEST)?, Variant::Default)?;
    let o = children::output(Command::new(gotrace_bin()).arg("inspect").arg(&exe))?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout)?;
    let values: BTreeSet<usize> = text
        .lines()
        .filter_map(|l| l.strip_prefix("variable"))
        .map(|l| {
            let name_end = l.trim_start().find(' ').unwrap() + (l.len() - l.trim_start().len());
            let value = name_end + l[name_end..].len() - l[name_end..].trim_start().len();
            assert!(value - name_end >= 2, "{l:?}");
            value
        })
        .collect();
    assert_eq!(values.len(), 1, "{text}");
    assert!(text.contains("runtime.waitReasonStrings  0x"), "{text}");
    Ok(())
}
