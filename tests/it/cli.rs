//! The `gotrace attach` command as users run it: stopping by signal, by duration, by the
//! target's exit; the report it leaves behind; its help.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result};
use gotrace_tests::{bpf, children, fixtures, go, gotrace_bin, GoProcess, Toolchain, Variant};
use serde_json::Value;

fn workload() -> Result<GoProcess> {
    let exe = fixtures::build("workload", Toolchain::find(go::NEWEST)?, Variant::Stripped)?;
    GoProcess::start(&exe, &["-mode", "churn"])
}

fn read_report(dir: &std::path::Path) -> Result<Value> {
    let text = std::fs::read_to_string(dir.join("report.json")).context("report.json")?;
    Ok(serde_json::from_str(&text)?)
}

/// Starts `gotrace attach PID <extra> --out OUT`, checks that it says it attached, and
/// returns it with the rest of its stderr.
fn spawn_attach(
    pid: u32,
    extra: &[&str],
    out: &std::path::Path,
) -> Result<(
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStderr>>,
)> {
    let mut gotrace = children::spawn(
        Command::new(gotrace_bin())
            .args(["attach", &pid.to_string()])
            .args(extra)
            .arg("--out")
            .arg(out)
            .stderr(Stdio::piped()),
    )?;
    let mut stderr = BufReader::new(gotrace.stderr.take().unwrap()).lines();
    let first = stderr.next().context("gotrace printed nothing")??;
    assert!(first.starts_with("gotrace: attached to"), "{first}");
    Ok((gotrace, stderr))
}

/// Attaches, waits for the first live summary line, sends `signal`, and checks the clean exit.
fn stops_cleanly_on(signal: libc::c_int) -> Result<()> {
    let lock = bpf::exclusive();
    let target = workload()?;
    let out = tempdir("signal");
    let (mut gotrace, mut stderr) = spawn_attach(target.pid(), &["--interval", "200ms"], &out)?;
    let summary = stderr
        .find(|l| l.as_ref().map_or(true, |l| !l.starts_with("gotrace:")))
        .context("no live summary")??;
    assert!(summary.contains("goroutines started"), "{summary}");
    unsafe { libc::kill(gotrace.id() as i32, signal) };
    let rest: Vec<String> = stderr.map_while(|l| l.ok()).collect();
    let status = gotrace.wait()?;
    assert!(status.success(), "{status}: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("stopped after")), "{rest:?}");
    let report = read_report(&out)?;
    assert_eq!(report["session"]["end_reason"], "stopped");
    assert!(report["counters"]["goroutines_created"].as_u64().unwrap() > 0);
    // The target keeps running, untouched.
    assert!(std::path::Path::new(&format!("/proc/{}", target.pid())).exists());
    lock.assert_nothing_loaded()
}

#[test]
fn sigint_detaches_and_writes_the_report() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    stops_cleanly_on(libc::SIGINT)
}

#[test]
fn sigterm_detaches_and_writes_the_report() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    stops_cleanly_on(libc::SIGTERM)
}

#[test]
fn duration_and_json_on_stdout() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let target = workload()?;
    let out = tempdir("duration");
    let output = children::output(
        Command::new(gotrace_bin())
            .args([
                "attach",
                &target.pid().to_string(),
                "--duration",
                "1s",
                "--json",
                "--quiet",
                "--out",
            ])
            .arg(&out),
    )?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Value = serde_json::from_slice(&output.stdout)?;
    let written = read_report(&out)?;
    assert_eq!(printed, written, "--json prints the report it writes");
    assert_eq!(written["session"]["end_reason"], "duration");
    assert_eq!(written["target"]["pid"], target.pid());
    assert!(written["target"]["go_version"]
        .as_str()
        .unwrap()
        .starts_with("go1.27"));
    assert_eq!(written["target"]["stripped"], true);
    let d = written["session"]["duration_s"].as_f64().unwrap();
    assert!((1.0..3.0).contains(&d), "duration {d}");
    for key in ["goroutines_created", "goroutines_exited", "events_lost"] {
        assert!(written["counters"][key].is_u64(), "counters.{key}");
    }
    // No probe was placed: what only a probe counts is not measured, and says so.
    for key in ["chan_sends", "chans_made", "finalizers_set", "mallocs"] {
        assert!(written["counters"][key].is_null(), "counters.{key}");
    }
    assert!(
        written["goroutines"]["live_at_end"].is_u64()
            || written["goroutines"]["live_at_end"].is_null()
    );
    lock.assert_nothing_loaded()
}

#[test]
fn ends_when_the_target_exits() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let exe = fixtures::build("events", Toolchain::find(go::OLDEST)?, Variant::Default)?;
    let mut target = GoProcess::start(&exe, &["-goroutines", "5"])?;
    let out = tempdir("exit");
    let (mut gotrace, stderr) = spawn_attach(target.pid(), &["--goroutine-events"], &out)?;
    target.send("go")?;
    target.expect_line("done", Duration::from_secs(30))?;
    target.wait(Duration::from_secs(30))?;
    let rest: Vec<String> = stderr.map_while(Result::ok).collect();
    let status = gotrace.wait()?;
    assert!(status.success(), "{status}: {rest:#?}");
    let report = read_report(&out)?;
    assert_eq!(report["session"]["end_reason"], "target-exited");
    assert_eq!(report["counters"]["goroutines_created"], 5);
    lock.assert_nothing_loaded()
}

#[test]
fn help_shows_examples() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    for args in [&["--help"][..], &["attach", "--help"][..]] {
        let out = children::output(Command::new(gotrace_bin()).args(args))?;
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout)?;
        assert!(text.contains("Examples:"), "{text}");
        assert!(text.contains("sudo gotrace attach"), "{text}");
    }
    Ok(())
}

/// The keys of a report, two levels deep: what a reader of report.json relies on.
fn shape(v: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(o) = v.as_object() {
        for (k, inner) in o {
            keys.push(k.clone());
            if let Some(io) = inner.as_object() {
                keys.extend(io.keys().map(|ik| format!("{k}.{ik}")));
            }
        }
    }
    keys.sort();
    keys
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gotrace-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn inspect_a_stripped_file_without_privileges() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let exe = fixtures::build("events", Toolchain::find(go::NEWEST)?, Variant::StrippedPie)?;
    let nobody = [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ];
    let out = children::output(
        Command::new("setpriv")
            .args(nobody)
            .arg(gotrace_bin())
            .args(["inspect", "--json"])
            .arg(&exe),
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let i: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(i["go_version"], "go1.27.3");
    assert_eq!(
        (
            i["symbol_table"].as_bool(),
            i["dwarf"].as_bool(),
            i["pie"].as_bool()
        ),
        (Some(false), Some(false), Some(true))
    );
    assert!(i["unsupported"].is_null());
    assert_eq!(i["offsets_source"]["kind"], "table");
    assert_eq!(i["variables"]["runtime.allgs"]["from"], "code");
    for probe in i["probes"].as_array().unwrap() {
        assert!(probe["unavailable"].is_null(), "{probe}");
        assert!(!probe["sites"].as_array().unwrap().is_empty(), "{probe}");
    }
    // The text form names every probe.
    let text = children::output(Command::new(gotrace_bin()).arg("inspect").arg(&exe))?;
    let text = String::from_utf8(text.stdout)?;
    for name in [
        "goroutine-create",
        "goroutine-exit",
        "chan-send",
        "set-finalizer",
        "exact-alloc",
    ] {
        assert!(text.contains(name), "{text}");
    }
    Ok(())
}

#[test]
fn inspect_a_process_and_bad_files() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let target = workload()?;
    let out = children::output(Command::new(gotrace_bin()).args([
        "inspect",
        "--json",
        &target.pid().to_string(),
    ]))?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let i: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(i["pid"], target.pid());

    // Not Go, truncated Go: one line, exit 1.
    let truncated = std::env::temp_dir().join(format!("gotrace-truncated-{}", std::process::id()));
    let exe = fixtures::build("events", Toolchain::find(go::NEWEST)?, Variant::Default)?;
    let bytes = std::fs::read(&exe)?;
    std::fs::write(&truncated, &bytes[..bytes.len() / 3])?;
    for (file, needle) in [
        ("/bin/sh".into(), "not a Go program"),
        ("/etc/passwd".into(), "not an ELF executable"),
        (truncated.clone(), "truncated or corrupt"),
    ] {
        let out = children::output(Command::new(gotrace_bin()).arg("inspect").arg(&file))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("gotrace: error: ") && stderr.contains(needle),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let _ = std::fs::remove_file(truncated);
    Ok(())
}

/// The heap evidence users open in their tools: heap.pb.gz readable by `go tool pprof`,
/// flamegraphs, the live flamegraph, and `gotrace record`.
#[test]
fn heap_files_and_record() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let tc = Toolchain::find(go::NEWEST)?;
    let exe = fixtures::build("heapsites", tc, Variant::Stripped)?;
    let mut target = GoProcess::start(&exe, &[])?;
    let out = tempdir("heapfiles");
    let live = out.with_extension("live.svg");
    let (mut gotrace, mut stderr) = spawn_attach(
        target.pid(),
        &[
            "--interval",
            "200ms",
            "--flamegraph",
            &live.display().to_string(),
        ],
        &out,
    )?;
    let sampler = stderr.next().context("sampler line")??;
    assert!(sampler.contains("MemProfileRate 0 -> 524288"), "{sampler}");
    target.send("go")?;
    target.expect_line("done", Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(1));
    unsafe { libc::kill(gotrace.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = stderr.map_while(|l| l.ok()).collect();
    assert!(gotrace.wait()?.success(), "{rest:?}");
    let pprof_top = |file: &std::path::Path| -> Result<String> {
        let o = children::output(tc.command().args(["tool", "pprof", "-top"]).arg(file))?;
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Ok(String::from_utf8(o.stdout)?)
    };
    let top = pprof_top(&out.join("heap.pb.gz"))?;
    assert!(top.contains("heapwork.retainBig"), "{top}");
    // The goroutine profile: the fixture's main goroutine waits for a command on stdin.
    let goroutines = pprof_top(&out.join("goroutine.pb.gz"))?;
    assert!(
        goroutines.contains("Type: goroutine") && goroutines.contains("main.main"),
        "{goroutines}"
    );
    for svg in ["heap-inuse.svg", "heap-alloc.svg"] {
        let text = std::fs::read_to_string(out.join(svg))?;
        assert!(
            text.starts_with("<?xml") && text.contains("retainBig"),
            "{svg}"
        );
    }
    assert!(std::fs::read_to_string(out.join("heap-inuse.folded"))?.contains("heapwork.retainBig"));
    assert!(
        std::fs::read_to_string(&live)?.contains("retainBig"),
        "the live flamegraph"
    );
    let report = read_report(&out)?;
    assert_eq!(report["heap"]["profile"], "heap.pb.gz");
    assert_eq!(report["heap"]["sampler"]["set_by_gotrace"], true);

    // record: no eBPF at all, the same profile format.
    let recorded = out.join("recorded.pb.gz");
    let o = children::output(
        Command::new(gotrace_bin())
            .args([
                "record",
                &target.pid().to_string(),
                "--duration",
                "1s",
                "--quiet",
                "-o",
            ])
            .arg(&recorded),
    )?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(pprof_top(&recorded)?.contains("heapwork.retainBig"));

    // check: the same snapshot through the same writer, so the same files and report fields.
    let checked = tempdir("heapfiles-check");
    let o = children::output(
        Command::new(gotrace_bin())
            .args([
                "check",
                "--pid",
                &target.pid().to_string(),
                "--duration",
                "1s",
            ])
            .args(["--fail-on", "none", "--out"])
            .arg(&checked),
    )?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let files = |dir: &std::path::Path| -> Result<Vec<String>> {
        let mut v: Vec<String> = std::fs::read_dir(dir)?
            .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_>>()?;
        v.retain(|f| f != "recorded.pb.gz");
        v.sort();
        Ok(v)
    };
    assert_eq!(files(&out)?, files(&checked)?);
    let check_report = read_report(&checked)?;
    assert_eq!(shape(&report), shape(&check_report));
    assert_eq!(check_report["heap"]["profile"], "heap.pb.gz");
    target.send("exit")?;
    target.wait(Duration::from_secs(30))?;
    lock.assert_nothing_loaded()
}

/// `inspect` of a FIFO, a directory or a device: refused at once with what it is (a FIFO used to
/// block forever, the others to say "No such device").
#[test]
fn inspect_refuses_what_is_not_a_file() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let fifo = std::env::temp_dir().join(format!("gotrace-fifo-{}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let made = children::status(Command::new("mkfifo").arg(&fifo))?;
    assert!(made.success());
    for (path, kind) in [
        (fifo.clone(), "is a FIFO"),
        (std::env::temp_dir(), "is a directory"),
        ("/dev/null".into(), "is a device"),
    ] {
        let mut child = children::spawn(
            Command::new(gotrace_bin())
                .arg("inspect")
                .arg(&path)
                .stderr(Stdio::piped()),
        )?;
        let started = std::time::Instant::now();
        while child.try_wait()?.is_none() && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.try_wait()?.is_none() {
            child.kill()?;
            child.wait()?;
            panic!("inspect {path:?} still running after 10 s");
        }
        let out = child.wait_with_output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{path:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(kind) && stderr.contains("not an executable file"),
            "{path:?}: {stderr}"
        );
    }
    std::fs::remove_file(&fifo)?;
    Ok(())
}
