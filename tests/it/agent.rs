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
    // The main module (the build info's `mod` line): every fixture is a package of it.
    assert_eq!(labels["module"], "gotrace.dev/fixtures", "{target:#}");
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

/// A real Prometheus (Debian's), scraping one target every second.
struct Prometheus {
    child: std::process::Child,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Result<Prometheus> {
        let port = free_port()?;
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gotrace\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )?;
        let child = children::spawn(
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
        Ok(Prometheus { child, port })
    }

    /// The query API's answer (`data`), once Prometheus is up.
    fn query(&self, query: &str) -> Result<serde_json::Value> {
        let mut encoded = String::new();
        for b in query.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => {
                    encoded.push(b as char)
                }
                _ => encoded.push_str(&format!("%{b:02X}")),
            }
        }
        let url = format!(
            "http://127.0.0.1:{}/api/v1/query?query={encoded}",
            self.port
        );
        let (status, body) = gotrace_tests::agent::curl(&url)?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .with_context(|| format!("{status}: {}", String::from_utf8_lossy(&body)))?;
        if v["status"] != "success" {
            bail!("query {query:?}: {v}");
        }
        Ok(v["data"].clone())
    }

    /// The first value of `query`, once Prometheus has scraped one (within 60 s).
    fn value(&self, query: &str) -> Result<f64> {
        let begin = Instant::now();
        loop {
            if let Ok(data) = self.query(query) {
                if let Some(value) = data["result"][0]["value"][1].as_str() {
                    return Ok(value.parse()?);
                }
            }
            if begin.elapsed() > Duration::from_secs(60) {
                bail!("Prometheus has no value for {query} after 60 s");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Grafana dashboard shipped in dist/: every query it makes.
fn dashboard_queries() -> Result<Vec<String>> {
    let path = fixtures::workspace_root().join("dist/grafana/gotrace-agent.json");
    let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().context("panels")? {
        for t in panel["targets"].as_array().context("targets")? {
            out.push(t["expr"].as_str().context("expr")?.to_string());
        }
    }
    Ok(out)
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

    // A leaking neighbour: its finding reaches /metrics, /targets and the log.
    let (leaky, _) = private_copy(&fixtures::build("goleak", tc, Variant::Default)?, &dir)?;
    let leaky = GoProcess::start(&leaky, &[])?;

    let agent = Agent::start(&["--include", &include, "--min-age", "1s"])?;
    let target = agent.wait_for(proc.pid(), Duration::from_secs(10))?;
    agent.wait_for(leaky.pid(), Duration::from_secs(10))?;
    assert_eq!(agent.targets()?.len(), 2, "exactly the included processes");
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
    let prometheus = Prometheus::start(&dir, &addr)?;
    let scraped = prometheus.value(&format!("gotrace_goroutines{{pid=\"{pid}\"}}"))?;
    assert_eq!(scraped, num_goroutine);
    let heap = prometheus.value(&format!("gotrace_heap_inuse_bytes{{pid=\"{pid}\"}}"))?;
    assert!(
        heap > 0.0 && heap < 64.0 * 1024.0 * 1024.0,
        "heap in use {heap}"
    );
    let leak = format!(
        "gotrace_findings{{pid=\"{}\",pattern=\"goroutine-leak\"}}",
        leaky.pid()
    );
    assert_eq!(prometheus.value(&leak)?, 1.0);
    let found = agent.wait_for(leaky.pid(), Duration::ZERO)?;
    assert_eq!(
        found["findings"][0]["pattern"], "goroutine-leak",
        "{found:#}"
    );
    assert!(
        agent
            .log()
            .iter()
            .any(|l| l.contains("event=finding pattern=goroutine-leak")),
        "the finding is logged: {:#?}",
        agent.log()
    );
    let metrics = String::from_utf8(agent.ok("/metrics")?)?;
    for name in [
        "gotrace_heap_inuse_bytes{",
        "gotrace_heap_goal_bytes{",
        "gotrace_goroutine_stack_bytes{",
        "gotrace_gc_cycles_total{",
        "gotrace_agent_targets 2",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    // The dashboard's queries are valid PromQL over metrics the agent has.
    for q in dashboard_queries()? {
        let q = q.replace("$service", ".*").replace("$host", ".*");
        prometheus.query(&q)?;
        for name in q
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("gotrace_"))
        {
            let family = name.trim_end_matches("_total");
            assert!(
                metrics.contains(&format!("# TYPE {family} ")),
                "the dashboard queries {name}, which /metrics does not have"
            );
        }
    }
    assert!(agent.stop()?.success());
    drop((proc, leaky));
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

#[test]
fn the_systemd_unit_verifies() -> Result<()> {
    let _children = children::guard();
    let dir = fixtures::scratch_dir("agent-unit")?;
    let unit =
        std::fs::read_to_string(fixtures::workspace_root().join("dist/gotrace-agent.service"))?;
    assert!(
        unit.contains("ExecStart=/usr/local/bin/gotrace agent"),
        "{unit}"
    );
    // The unit names the installed binary; verify checks that it exists, so point it at ours.
    let file = dir.join("gotrace-agent.service");
    let bin = gotrace_tests::gotrace_bin();
    std::fs::write(
        &file,
        unit.replace("/usr/local/bin/gotrace", &bin.display().to_string()),
    )?;
    let out = children::output(Command::new("systemd-analyze").arg("verify").arg(&file))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `gotrace agent ARGS` run to its end: exit code and stderr.
fn agent_output(args: &[&str]) -> Result<(Option<i32>, String, String)> {
    let out = children::output(
        Command::new(gotrace_tests::gotrace_bin())
            .arg("agent")
            .args(args),
    )?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn settings_come_from_the_file_and_flags_override_them() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _children = children::guard();
    let dir = fixtures::scratch_dir("agent-config")?;
    let file = dir.join("agent.toml");
    let config = file.display().to_string();
    std::fs::write(
        &file,
        "interval = \"30s\"\ninclude = [\"api-*\"]\nread_only = true\n[push]\nurl = \"http://pyroscope:4040\"\n",
    )?;
    let (code, stdout, stderr) =
        agent_output(&["--config", &config, "--interval", "2m", "--print-config"])?;
    assert_eq!(code, Some(0), "{stderr}");
    let printed: toml::Table = stdout.parse()?;
    assert_eq!(printed["interval"].as_str(), Some("2m"), "{stdout}");
    assert_eq!(printed["read_only"].as_bool(), Some(true), "{stdout}");
    assert_eq!(
        printed["listen"].as_str(),
        Some("127.0.0.1:7070"),
        "{stdout}"
    );
    assert!(
        stdout.contains("api-*") && stdout.contains("http://pyroscope:4040"),
        "{stdout}"
    );
    // What --print-config prints is itself a valid file.
    let again = dir.join("printed.toml");
    std::fs::write(&again, &stdout)?;
    let (code, reprinted, stderr) =
        agent_output(&["--config", &again.display().to_string(), "--print-config"])?;
    assert_eq!(
        (code, reprinted.as_str()),
        (Some(0), stdout.as_str()),
        "{stderr}"
    );

    // Bad input: one line naming the problem, exit 1 (a bad value: the parser's exit 2).
    std::fs::write(&file, "intervl = \"30s\"\n")?;
    let (code, _, stderr) = agent_output(&["--config", &config])?;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("unknown setting `intervl`") && stderr.lines().count() == 1,
        "{stderr}"
    );
    std::fs::write(&file, "interval = \"soon\"\n")?;
    let (code, _, stderr) = agent_output(&["--config", &config])?;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("soon"), "{stderr}");
    std::fs::write(&file, "interval = \"30s\"\n")?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666))?;
    let (code, _, stderr) = agent_output(&["--config", &config])?;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("chmod go-w"), "{stderr}");
    let (code, _, stderr) =
        agent_output(&["--config", &dir.join("missing.toml").display().to_string()])?;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("missing.toml"), "{stderr}");
    let (code, _, stderr) = agent_output(&["--cpu-budget", "0"])?;
    assert_eq!(code, Some(2), "{stderr}");
    let busy = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = busy.local_addr()?.to_string();
    let (code, _, stderr) = agent_output(&["--listen", &addr, "--no-history"])?;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn a_token_guards_everything_but_healthz() -> Result<()> {
    let _children = children::guard();
    let dir = fixtures::scratch_dir("agent-token")?;
    let token = dir.join("token");
    std::fs::write(&token, "s3cret\n")?;
    let agent = Agent::start(&[
        "--listen-token-file",
        &token.display().to_string(),
        "--include",
        "/nothing/*",
    ])?;
    assert_eq!(agent.get("/healthz")?.0, 200);
    for path in [
        "/targets",
        "/metrics",
        "/sd",
        "/targets/1-1/debug/pprof/heap",
    ] {
        assert_eq!(agent.get(path)?.0, 401, "{path} without the token");
    }
    let with = |header: &str| -> Result<u16> {
        let out = children::output(
            Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", header])
                .arg(format!("{}/targets", agent.url)),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    };
    assert_eq!(with("Authorization: Bearer s3cret")?, 200);
    assert_eq!(with("Authorization: Bearer s3cre")?, 401);
    assert_eq!(with("Authorization: Basic s3cret")?, 401);
    assert!(agent.stop()?.success());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
