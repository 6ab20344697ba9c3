//! `gotrace agent` end to end, with the clients users have: `go tool pprof` loads every
//! endpoint and its heap shares equal the program's own profile, `goroutine?debug=2` lists the
//! goroutines Go's own dump lists, a real Prometheus scrapes `/metrics`, and SIGTERM leaves
//! every program's sampler as it was found.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use gotrace::pprof;
use gotrace_tests::{agent::Agent, children, fixtures, go, GoProcess, Toolchain, Variant};

use crate::{goroutine_counts::by_main_function, heap::pprof_shares};

/// The fixture copied into a directory of the test's own, so that the agent can be told to
/// watch it alone (`--include DIR/*`): other tests' fixtures run meanwhile.
fn private_copy(exe: &Path, dir: &Path) -> Result<(PathBuf, String)> {
    let copy = dir.join(exe.file_name().context("fixture name")?);
    std::fs::copy(exe, &copy)?;
    Ok((copy, format!("{}/*", dir.display())))
}

fn go_pprof_loads(tc: &Toolchain, file: &Path) -> Result<()> {
    let out = children::output(tc.command().args(["tool", "pprof", "-raw"]).arg(file))?;
    if !out.status.success() {
        bail!(
            "go tool pprof -raw {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[test]
fn heap_endpoints_agree_with_the_programs_own_profile() -> Result<()> {
    let _children = children::guard();
    let tc = Toolchain::find(go::NEWEST)?;
    let dir = fixtures::scratch_dir("agent-heap")?;
    let (exe, include) = private_copy(
        &fixtures::build("heapsitespprof", tc, Variant::Default)?,
        &dir,
    )?;
    let own = dir.join("own.pb.gz");
    let mut proc = GoProcess::start(&exe, &["-out", &own.display().to_string()])?;
    proc.send("go")?;
    proc.expect_line("done", Duration::from_secs(120))?;
    // No GC cycle from here on: the agent reads the profile of the cycle Go's own describes.
    let agent = Agent::start(&["--include", &include, "--min-age", "1s"])?;
    let target = agent.wait_for(proc.pid(), Duration::from_secs(10))?;
    let labels = &target["labels"];
    assert_eq!(labels["exe"], "heapsitespprof", "{target:#}");
    assert_eq!(labels["pid"], proc.pid().to_string(), "{target:#}");
    assert_eq!(
        labels["module"], "gotrace.dev/fixtures/heapsitespprof",
        "{target:#}"
    );
    assert!(
        labels["go_version"]
            .as_str()
            .is_some_and(|v| v.starts_with(&format!("go{}", go::NEWEST))),
        "{target:#}"
    );
    let id = target["id"].as_str().context("id")?.to_string();
    let base = format!("/targets/{id}/debug/pprof");
    for name in ["heap", "allocs", "goroutine", "delta_heap"] {
        let file = agent.save(&format!("{base}/{name}"), &dir, &format!("{name}.pb.gz"))?;
        go_pprof_loads(&tc, &file)?;
    }
    let allocs = pprof::decode(&std::fs::read(dir.join("allocs.pb.gz"))?)?;
    assert_eq!(
        allocs.string_table[allocs.default_sample_type as usize],
        "alloc_space"
    );

    let go = pprof_shares(&tc, &own)?;
    let ours = pprof_shares(&tc, &dir.join("heap.pb.gz"))?;
    let mut compared = 0;
    for (func, want) in go
        .inuse
        .iter()
        .filter(|(f, p)| f.contains("heapwork") && **p >= 1.0)
    {
        let got = ours.inuse.get(func).copied().unwrap_or(0.0);
        assert!(
            (got - want).abs() <= 5.0,
            "{func}: agent {got:.1}% vs Go {want:.1}% (all: {:?})",
            ours.inuse
        );
        compared += 1;
    }
    assert!(
        compared >= 3,
        "Go's profile shows the retaining sites: {:?}",
        go.inuse
    );
    let ratio = ours.alloc_total / go.alloc_total;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "alloc total: agent {} vs Go {}",
        ours.alloc_total,
        go.alloc_total
    );

    // A delta since the previous request: nothing was allocated in between.
    let again = pprof::decode(&agent.ok(&format!("{base}/delta_heap"))?)?;
    let alloc_index = again
        .sample_type
        .iter()
        .position(|t| again.string_table[t.r#type as usize] == "alloc_space")
        .context("alloc_space")?;
    let allocated: i64 = again.sample.iter().map(|s| s.value[alloc_index]).sum();
    assert!(
        allocated < 1 << 20,
        "a quiet program allocated {allocated} bytes between two deltas"
    );

    let (status, body) = agent.get("/targets/1-1/debug/pprof/heap")?;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert!(agent.stop()?.success());
    proc.send("exit")?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `goroutine N [state...]:` headers and the first function under each, from debug=2 text.
fn goroutines_of(dump: &str) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    let mut lines = dump.lines();
    while let Some(l) = lines.next() {
        let Some(rest) = l.strip_prefix("goroutine ") else {
            continue;
        };
        let Some((id, _)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(id) = id.parse() else { continue };
        let func = lines.next().unwrap_or_default();
        let func = func.split('(').next().unwrap_or_default().to_string();
        out.insert(id, func);
    }
    out
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A real Prometheus scraping `target` every second; its query API's answer for `query`, once
/// it has one.
fn prometheus_value(dir: &Path, target: &str, query: &str) -> Result<f64> {
    let port = free_port()?;
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gotrace\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )?;
    let mut prometheus = children::spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
    .context("starting prometheus (installed by `cargo xtask setup`)")?;
    let begin = Instant::now();
    let result = loop {
        let url = format!(
            "http://127.0.0.1:{port}/api/v1/query?query={}",
            query
                .replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22")
        );
        if let Ok((200, body)) = gotrace_tests::agent::curl(&url) {
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            if let Some(value) = v["data"]["result"][0]["value"][1].as_str() {
                break Ok(value.parse()?);
            }
        }
        if begin.elapsed() > Duration::from_secs(60) {
            break Err(anyhow::anyhow!(
                "Prometheus has no value for {query} after 60 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    result
}

#[test]
fn goroutines_as_go_lists_them_and_scraped_by_prometheus() -> Result<()> {
    let _children = children::guard();
    let tc = Toolchain::find(go::OLDEST)?;
    let dir = fixtures::scratch_dir("agent-goroutines")?;
    let (exe, include) = private_copy(&fixtures::build("counts", tc, Variant::StrippedPie)?, &dir)?;
    let own = dir.join("own.pb.gz");
    let mut proc = GoProcess::start(&exe, &["-out", &own.display().to_string()])?;
    proc.send("count")?;
    let num_goroutine: f64 = proc
        .expect_line("count ", Duration::from_secs(10))?
        .trim_start_matches("count ")
        .parse()?;

    let agent = Agent::start(&["--include", &include, "--min-age", "1s"])?;
    let target = agent.wait_for(proc.pid(), Duration::from_secs(10))?;
    let id = target["id"].as_str().context("id")?.to_string();
    let base = format!("/targets/{id}/debug/pprof");

    // Go's own debug=2 dump and the agent's: the same goroutines, in the same functions (the
    // main goroutine runs while Go writes its own, and waits on stdin while the agent reads).
    let theirs = goroutines_of(&std::fs::read_to_string(dir.join("own.pb.gz.debug2"))?);
    let ours = goroutines_of(&String::from_utf8(
        agent.ok(&format!("{base}/goroutine?debug=2"))?,
    )?);
    assert_eq!(
        ours.keys().collect::<BTreeSet<_>>(),
        theirs.keys().collect::<BTreeSet<_>>(),
        "agent {ours:#?}\nGo {theirs:#?}"
    );
    for (id, func) in &theirs {
        if func.starts_with("main.") && !func.starts_with("main.main") {
            assert_eq!(&ours[id], func, "goroutine {id}");
        }
    }
    // The pprof form counts the same goroutines in the same functions as Go's own profile.
    let profile = pprof::decode(&agent.ok(&format!("{base}/goroutine"))?)?;
    let go_profile = pprof::decode(&std::fs::read(&own)?)?;
    assert_eq!(by_main_function(&profile), by_main_function(&go_profile));
    let text = String::from_utf8(agent.ok(&format!("{base}/goroutine?debug=1"))?)?;
    assert!(
        text.starts_with(&format!("goroutine profile: total {num_goroutine}\n")),
        "{text}"
    );
    assert!(text.contains("main.waitForever+0x"), "{text}");

    // What a real Prometheus scrapes: the count runtime.NumGoroutine gives, the heap numbers.
    let addr = agent.url.trim_start_matches("http://").to_string();
    let pid = proc.pid();
    let scraped = prometheus_value(&dir, &addr, &format!("gotrace_goroutines{{pid=\"{pid}\"}}"))?;
    assert_eq!(scraped, num_goroutine);
    let metrics = String::from_utf8(agent.ok("/metrics")?)?;
    for name in [
        "gotrace_heap_inuse_bytes{",
        "gotrace_heap_goal_bytes{",
        "gotrace_goroutine_stack_bytes{",
        "gotrace_gc_cycles_total{",
        "gotrace_agent_targets 1",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    assert!(agent.stop()?.success());
    drop(proc);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn sigterm_restores_the_sampler_of_every_target() -> Result<()> {
    let _children = children::guard();
    let tc = Toolchain::find(go::NEWEST)?;
    let dir = fixtures::scratch_dir("agent-sampler")?;
    let (exe, include) = private_copy(&fixtures::build("sampler", tc, Variant::Default)?, &dir)?;
    let mut procs = vec![
        GoProcess::start(&exe, &["-rate", "0"])?,
        GoProcess::start(&exe, &["-rate", "0"])?,
    ];
    let rate = |p: &mut GoProcess| -> Result<u64> {
        p.send("rate")?;
        Ok(p.expect_line("rate ", Duration::from_secs(10))?
            .trim_start_matches("rate ")
            .trim()
            .parse()?)
    };
    for p in &mut procs {
        assert_eq!(rate(p)?, 0, "started with its sampler off");
    }
    let agent = Agent::start(&["--include", &include, "--min-age", "1s"])?;
    for p in &procs {
        agent.wait_for(p.pid(), Duration::from_secs(10))?;
    }
    for p in &mut procs {
        assert_eq!(rate(p)?, 512 * 1024, "the agent turns Go's sampler on");
    }
    let log = agent.log();
    assert!(agent.stop()?.success(), "{log:#?}");
    for p in &mut procs {
        assert_eq!(rate(p)?, 0, "restored on SIGTERM");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
