//! The agent's Pyroscope pusher against a real HTTP receiver: the requests are decoded with
//! this file's own definitions of the published push.v1 / types.v1 messages (not the
//! library's generated ones, so that a wrong field number shows), and each profile in them
//! must load in `go tool pprof`. Profiles come from a real process: a fixture snapshotted by
//! a probe-free session.

use std::{
    collections::{BTreeMap, BTreeSet},
    num::NonZeroUsize,
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use gotrace::{
    agent::push::{PushConfig, PushProfile, PushStats, Pusher},
    pprof,
    probes::ProbeSelection,
    AttachOptions,
};
use gotrace_tests::{
    children, fixtures, go,
    receiver::{self, Receiver, Request},
    trace, GoProcess, Toolchain, Variant,
};
use prost::Message;

use crate::export::{parse_raw, pprof as go_pprof};

/// push.v1.PushRequest, as published.
#[derive(Clone, PartialEq, Message)]
struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    series: Vec<RawProfileSeries>,
}

#[derive(Clone, PartialEq, Message)]
struct RawProfileSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<LabelPair>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<RawSample>,
}

/// types.v1.LabelPair.
#[derive(Clone, PartialEq, Message)]
struct LabelPair {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct RawSample {
    #[prost(bytes = "vec", tag = "1")]
    raw_profile: Vec<u8>,
    #[prost(string, tag = "2")]
    id: String,
}

const MEMORY_TYPES: [&str; 4] = [
    "alloc_objects/count",
    "alloc_space/bytes",
    "inuse_objects/count",
    "inuse_space/bytes",
];

/// A fixture's heap and goroutine profiles, gzipped, with the toolchain that built it.
#[derive(Clone)]
struct Profiles {
    heap: Vec<u8>,
    goroutines: Vec<u8>,
    toolchain: Toolchain,
}

/// Taken once for all the tests here (the fixture is gone once they are taken).
fn profiles() -> Result<Profiles> {
    static TAKEN: Mutex<Option<Profiles>> = Mutex::new(None);
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = &*taken {
        return Ok(p.clone());
    }
    let toolchain = Toolchain::find(go::NEWEST)?;
    let exe = fixtures::build("heapgrow", toolchain, Variant::Default)?;
    let proc = GoProcess::start(&exe, &["-mode", "steady"])?;
    let tracing = trace::start(
        proc.pid(),
        AttachOptions {
            probes: ProbeSelection::none(),
            ..AttachOptions::default()
        },
    )?;
    // A few of the fixture's GC cycles, each of which publishes its heap profile.
    std::thread::sleep(Duration::from_secs(2));
    let (session, _) = tracing.finish()?;
    let snap = session.snapshot(None)?;
    let p = Profiles {
        heap: pprof::gzip(&snap.heap.context("no heap profile")?)?,
        goroutines: pprof::gzip(&snap.goroutines.context("no goroutine profile")?)?,
        toolchain,
    };
    *taken = Some(p.clone());
    Ok(p)
}

/// Pusher::start reads GOTRACE_PUSH_* from the environment, which one test here sets: the
/// others must not start a pusher meanwhile.
static ENV: Mutex<()> = Mutex::new(());

fn start(config: &PushConfig) -> Result<Pusher> {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    Pusher::start(config)?.context("no pusher although a URL is given")
}

fn config(url: &str) -> PushConfig {
    PushConfig {
        url: Some(url.to_string()),
        ..PushConfig::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn profile(name: &'static str, pairs: &[(&str, &str)], pprof_gz: &[u8]) -> PushProfile {
    PushProfile {
        name,
        labels: labels(pairs),
        pprof_gz: pprof_gz.to_vec(),
    }
}

/// The pusher's stats once `done` holds of them (an error after `timeout`, with the stats).
fn wait_stats(
    pusher: &Pusher,
    timeout: Duration,
    done: impl Fn(&PushStats) -> bool,
) -> Result<PushStats> {
    let end = Instant::now() + timeout;
    loop {
        let s = pusher.stats();
        if done(&s) {
            return Ok(s);
        }
        if Instant::now() > end {
            bail!("after {timeout:?} the pusher's stats are {s:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The profiles, a receiver whose first answers are `statuses`, and a pusher to it.
fn scripted(statuses: &[u16]) -> Result<(Profiles, Receiver, Pusher)> {
    let p = profiles()?;
    let receiver = Receiver::start()?;
    receiver.answer(statuses);
    let pusher = start(&config(&receiver.url()))?;
    Ok((p, receiver, pusher))
}

/// A push request as the Connect protocol has it, decoded.
fn decode(req: &Request) -> Result<PushRequest> {
    ensure!(req.method == "POST", "method {}", req.method);
    ensure!(
        req.path == "/push.v1.PusherService/Push",
        "path {}",
        req.path
    );
    ensure!(
        req.header("Content-Type") == Some("application/proto"),
        "content type {:?}",
        req.header("Content-Type")
    );
    Ok(PushRequest::decode(req.body.as_slice())?)
}

fn label<'s>(series: &'s RawProfileSeries, name: &str) -> Option<&'s str> {
    series
        .labels
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.value.as_str())
}

/// The sample types of a profile as `go tool pprof -raw` loads it ("[dflt]" marks aside).
fn loaded_sample_types(tc: Toolchain, raw_profile: &[u8], file: &str) -> Result<Vec<String>> {
    let path = fixtures::scratch_dir("agent-push")?.join(file);
    std::fs::write(&path, raw_profile)?;
    let raw = parse_raw(&go_pprof(tc, &["-symbolize=none", "-raw"], &path)?)?;
    Ok(raw
        .sample_types
        .iter()
        .map(|t| t.trim_end_matches("[dflt]").to_string())
        .collect())
}

#[test]
fn push_sends_one_series_per_label_set_that_pprof_loads() -> Result<()> {
    let _children = children::guard();
    // The first request is answered 503: the retry then carries everything pushed meanwhile.
    let (p, receiver, pusher) = scripted(&[503])?;
    let a = [
        ("service_name", "heapgrow"),
        ("pid", "41"),
        ("exe", "/srv/heapgrow"),
    ];
    let b = [
        ("service_name", "heapgrow"),
        ("pid", "42"),
        ("exe", "/srv/heapgrow"),
    ];
    pusher.push(profile("memory", &a, &p.heap));
    pusher.push(profile("goroutine", &a, &p.goroutines));
    pusher.push(profile("memory", &a, &p.heap));
    pusher.push(profile("memory", &b, &p.heap));
    wait_stats(&pusher, Duration::from_secs(15), |s| s.sent == 4)?;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "the 503, then the retry");
    for r in &requests {
        decode(r)?;
    }
    let push = decode(&requests[1])?;

    let mut by_set = BTreeMap::new();
    for series in &push.series {
        ensure!(
            series.labels[0].name == "__name__",
            "__name__ first: {:?}",
            series.labels
        );
        let set: BTreeMap<&str, &str> = series
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(set.len(), series.labels.len(), "a label given twice");
        assert_eq!(set.get("__delta__"), Some(&"false"), "{set:?}");
        let key = (label(series, "__name__"), label(series, "pid"));
        ensure!(
            by_set.insert(key, series).is_none(),
            "two series for {key:?}"
        );
    }
    let expected = [
        ((Some("memory"), Some("41")), &a, 2),
        ((Some("goroutine"), Some("41")), &a, 1),
        ((Some("memory"), Some("42")), &b, 1),
    ];
    assert_eq!(by_set.len(), expected.len(), "{:?}", by_set.keys());
    let mut ids = BTreeSet::new();
    for (key, given, samples) in expected {
        let series = by_set.get(&key).context(format!("no series {key:?}"))?;
        for (name, value) in given {
            assert_eq!(label(series, name), Some(*value), "{key:?}: {name}");
        }
        assert_eq!(series.labels.len(), given.len() + 2, "{:?}", series.labels);
        assert_eq!(series.samples.len(), samples, "{key:?}");
        let (pushed, types): (&[u8], Vec<&str>) = match key.0 {
            Some("memory") => (&p.heap, MEMORY_TYPES.to_vec()),
            _ => (&p.goroutines, vec!["goroutine/count"]),
        };
        for (i, sample) in series.samples.iter().enumerate() {
            ensure!(
                sample.raw_profile == pushed,
                "{key:?}: not the bytes pushed"
            );
            ensure!(ids.insert(sample.id.clone()), "ID {:?} twice", sample.id);
            let file = format!("{}-{}-{i}.pb.gz", key.0.unwrap(), key.1.unwrap());
            let loaded = loaded_sample_types(p.toolchain, &sample.raw_profile, &file)?;
            assert_eq!(loaded, types, "{file}");
        }
    }
    ensure!(ids.iter().all(|id| id.len() == 36), "UUIDs: {ids:?}");

    let stats = pusher.shutdown(Duration::from_secs(1));
    assert_eq!(
        (
            stats.sent,
            stats.dropped,
            stats.failed_attempts,
            stats.queued
        ),
        (4, 0, 1, 0)
    );
    Ok(())
}

#[test]
fn push_receiver_down_keeps_the_newest_within_the_bound() -> Result<()> {
    let _children = children::guard();
    let p = profiles()?;
    let addr = receiver::unused_addr()?;
    let pusher = start(&PushConfig {
        queue: NonZeroUsize::new(3).unwrap(),
        ..config(&format!("http://{addr}"))
    })?;
    for seq in ["0", "1", "2", "3", "4"] {
        pusher.push(profile(
            "memory",
            &[("service_name", "s"), ("seq", seq)],
            &p.heap,
        ));
    }
    let stats = pusher.stats();
    assert_eq!((stats.queued, stats.dropped), (3, 2), "{stats:?}");
    wait_stats(&pusher, Duration::from_secs(10), |s| s.failed_attempts >= 1)?;
    // Up again (on the same port): what is queued arrives at the next attempt.
    let receiver = Receiver::start_on(addr)?;
    let stats = wait_stats(&pusher, Duration::from_secs(20), |s| s.sent == 3)?;
    assert_eq!((stats.dropped, stats.queued), (2, 0), "{stats:?}");
    let mut arrived = BTreeSet::new();
    for r in receiver.requests() {
        for series in decode(&r)?.series {
            for _ in &series.samples {
                arrived.insert(label(&series, "seq").unwrap_or("?").to_string());
            }
        }
    }
    assert_eq!(
        arrived,
        BTreeSet::from(["2", "3", "4"].map(String::from)),
        "the newest"
    );
    pusher.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn push_retries_5xx_and_429_until_delivered() -> Result<()> {
    let _children = children::guard();
    let (p, receiver, pusher) = scripted(&[500, 429])?;
    pusher.push(profile(
        "goroutine",
        &[("service_name", "s")],
        &p.goroutines,
    ));
    let stats = wait_stats(&pusher, Duration::from_secs(15), |s| s.sent == 1)?;
    assert_eq!((stats.failed_attempts, stats.dropped), (2, 0), "{stats:?}");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    let ids: BTreeSet<String> = requests
        .iter()
        .map(|r| Ok(decode(r)?.series[0].samples[0].id.clone()))
        .collect::<Result<_>>()?;
    assert_eq!(
        ids.len(),
        1,
        "every attempt sends the same profile: {ids:?}"
    );
    pusher.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn push_drops_what_a_400_refuses_without_retrying() -> Result<()> {
    let _children = children::guard();
    let (p, receiver, pusher) = scripted(&[400])?;
    pusher.push(profile("memory", &[("service_name", "s")], &p.heap));
    wait_stats(&pusher, Duration::from_secs(10), |s| s.dropped == 1)?;
    // Longer than the first backoff (at most 1.25 s): a retry would have come.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(receiver.requests().len(), 1, "not retried");
    // The next profile is sent as usual.
    pusher.push(profile("memory", &[("service_name", "s")], &p.heap));
    let stats = wait_stats(&pusher, Duration::from_secs(10), |s| s.sent == 1)?;
    assert_eq!(
        (stats.dropped, stats.failed_attempts, stats.queued),
        (1, 1, 0)
    );
    assert_eq!(receiver.requests().len(), 2);
    pusher.shutdown(Duration::from_secs(1));
    Ok(())
}

/// The one request a pusher configured so makes for a profile.
fn one_request(config: PushConfig, receiver: &Receiver) -> Result<Request> {
    let p = profiles()?;
    let pusher = start(&config)?;
    pusher.push(profile("memory", &[("service_name", "s")], &p.heap));
    let mut requests = receiver.wait_for(1, Duration::from_secs(10))?;
    pusher.shutdown(Duration::from_secs(1));
    Ok(requests.remove(0))
}

#[test]
fn push_credentials_arrive_from_a_file_and_the_environment() -> Result<()> {
    let _children = children::guard();
    let dir = fixtures::scratch_dir("agent-push-credentials")?;
    let token = dir.join("token");
    std::fs::write(&token, "s3cr3t\n")?;
    let receiver = Receiver::start()?;
    let r = one_request(
        PushConfig {
            token_file: Some(token.clone()),
            tenant_id: Some("team-a".into()),
            ..config(&receiver.url())
        },
        &receiver,
    )?;
    assert_eq!(r.header("Authorization"), Some("Bearer s3cr3t"));
    assert_eq!(r.header("X-Scope-OrgID"), Some("team-a"));

    // RFC 7617's example: "Aladdin:open sesame".
    let receiver = Receiver::start()?;
    let pusher = {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        std::env::set_var("GOTRACE_PUSH_BASIC_AUTH", "Aladdin:open sesame");
        let started = Pusher::start(&config(&receiver.url()));
        std::env::remove_var("GOTRACE_PUSH_BASIC_AUTH");
        started?.context("no pusher")?
    };
    pusher.push(profile(
        "memory",
        &[("service_name", "s")],
        &profiles()?.heap,
    ));
    let r = receiver.wait_for(1, Duration::from_secs(10))?.remove(0);
    pusher.shutdown(Duration::from_secs(1));
    assert_eq!(
        r.header("Authorization"),
        Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
    );
    assert_eq!(r.header("X-Scope-OrgID"), None);

    // Without credentials, no Authorization header at all.
    let receiver = Receiver::start()?;
    let r = one_request(config(&receiver.url()), &receiver)?;
    assert_eq!(r.header("Authorization"), None);
    Ok(())
}

#[test]
fn push_credentials_that_cannot_be_used_are_one_clear_error() -> Result<()> {
    let _children = children::guard();
    let dir = fixtures::scratch_dir("agent-push-bad-credentials")?;
    let (missing, empty, basic) = (dir.join("missing"), dir.join("empty"), dir.join("basic"));
    std::fs::write(&empty, "\n")?;
    std::fs::write(&basic, "no colon here\n")?;
    let error = |c: PushConfig| match start(&c) {
        Ok(_) => bail!("a pusher started with {c:?}"),
        Err(e) => Ok(e.to_string()),
    };
    let url = "http://127.0.0.1:9";
    for (c, file, says) in [
        (
            PushConfig {
                token_file: Some(missing.clone()),
                ..config(url)
            },
            &missing,
            "No such file",
        ),
        (
            PushConfig {
                token_file: Some(empty.clone()),
                ..config(url)
            },
            &empty,
            "is empty",
        ),
        (
            PushConfig {
                basic_auth_file: Some(basic.clone()),
                ..config(url)
            },
            &basic,
            "user:password",
        ),
        (
            PushConfig {
                token_file: Some(dir.clone()),
                ..config(url)
            },
            &dir,
            "not a regular file",
        ),
    ] {
        let e = error(c)?;
        assert!(
            e.contains(&file.display().to_string()) && e.contains(says) && !e.contains('\n'),
            "{e}"
        );
    }
    std::fs::write(&empty, "token")?;
    let both = error(PushConfig {
        token_file: Some(empty.clone()),
        basic_auth_file: Some(empty.clone()),
        ..config(url)
    })?;
    assert!(both.contains("keep one"), "{both}");
    Ok(())
}

#[test]
fn push_shutdown_sends_what_is_queued_within_its_time() -> Result<()> {
    let _children = children::guard();
    let (p, receiver, pusher) = scripted(&[])?;
    for pid in ["1", "2", "3"] {
        pusher.push(profile(
            "memory",
            &[("service_name", "s"), ("pid", pid)],
            &p.heap,
        ));
    }
    let stats = pusher.shutdown(Duration::from_secs(10));
    assert_eq!((stats.sent, stats.dropped, stats.queued), (3, 0, 0));
    assert!(!receiver.requests().is_empty());

    // Nobody listening: the time given is used, not more, and what is left counts as dropped.
    let pusher = start(&config(&format!("http://{}", receiver::unused_addr()?)))?;
    pusher.push(profile("memory", &[("service_name", "s")], &p.heap));
    let begin = Instant::now();
    let stats = pusher.shutdown(Duration::from_millis(1500));
    let took = begin.elapsed();
    assert!(
        (Duration::from_millis(1500)..Duration::from_secs(5)).contains(&took),
        "{took:?}"
    );
    assert_eq!((stats.sent, stats.dropped, stats.queued), (0, 1, 0));
    assert!(stats.failed_attempts >= 1, "{stats:?}");
    Ok(())
}

/// `gotrace agent --push-url` end to end: the agent, alone with a fixture in a PID namespace
/// of their own (so that it watches no other Go process of this host), pushes that target's
/// memory and goroutine profiles each interval, and flushes at SIGTERM.
#[test]
fn agent_pushes_each_targets_profiles_to_pyroscope() -> Result<()> {
    let _children = children::guard();
    let toolchain = Toolchain::find(go::NEWEST)?;
    let exe = fixtures::build("heapgrow", toolchain, Variant::Default)?;
    let receiver = Receiver::start()?;
    let mut agent = children::spawn(
        std::process::Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "sh", "-c"])
            .arg(r#"fixture="$1"; shift; "$fixture" -mode steady >/dev/null & exec "$@""#)
            .arg("sh")
            .arg(&exe)
            .arg(gotrace_tests::gotrace_bin())
            .args(["agent", "--listen", "127.0.0.1:0", "--no-history"])
            .args([
                "--interval",
                "2s",
                "--look-interval",
                "1s",
                "--cpu-budget",
                "100",
            ])
            .args(["--push-url", &receiver.url()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped()),
    )?;
    // Two intervals' worth: the first memory profile and a later one, whose allocations are
    // those since the first.
    let end = Instant::now() + Duration::from_secs(60);
    let mut memory = Vec::new();
    let mut goroutine = Vec::new();
    while memory.len() < 2 || goroutine.is_empty() {
        if Instant::now() > end {
            let _ = agent.kill();
            bail!(
                "within 60 s the agent pushed {} memory and {} goroutine profiles",
                memory.len(),
                goroutine.len()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        (memory, goroutine) = (Vec::new(), Vec::new());
        for r in receiver.requests() {
            for series in decode(&r)?.series {
                let into = match label(&series, "__name__") {
                    Some("memory") => &mut memory,
                    Some("goroutine") => &mut goroutine,
                    other => bail!("a series named {other:?}"),
                };
                for s in &series.samples {
                    into.push((series.labels.clone(), s.raw_profile.clone()));
                }
            }
        }
    }
    for (labels, raw) in memory.iter().chain(&goroutine) {
        let names: BTreeSet<&str> = labels.iter().map(|l| l.name.as_str()).collect();
        for name in ["service_name", "exe", "pid", "go_version", "host"] {
            ensure!(names.contains(name), "no {name} label in {labels:?}");
        }
        let exe_label = labels.iter().find(|l| l.name == "exe").unwrap();
        ensure!(exe_label.value.ends_with("heapgrow"), "{labels:?}");
        let types = loaded_sample_types(toolchain, raw, "agent.pb.gz")?;
        let expected: &[&str] = match labels[0].value.as_str() {
            "memory" => &MEMORY_TYPES,
            _ => &["goroutine/count"],
        };
        assert_eq!(types, expected, "{labels:?}");
    }

    // SIGTERM to the agent (the namespace's first process, the child of unshare).
    let children_file = format!("/proc/{0}/task/{0}/children", agent.id());
    let agent_pid: i32 = std::fs::read_to_string(&children_file)?
        .split_whitespace()
        .next()
        .context("unshare has no child")?
        .parse()?;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(agent_pid).context("pid")?,
        rustix::process::Signal::TERM,
    )?;
    let out = agent.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "the agent ended {}: {stderr}",
        out.status
    );
    ensure!(!stderr.contains("could not be sent"), "{stderr}");
    Ok(())
}

/// Every warning logged in this test process, by message. The logger is the process's
/// (one may be set only once); tests tell their own lines apart by the URL in them.
fn warnings() -> &'static Mutex<Vec<String>> {
    struct Catch(Mutex<Vec<String>>);
    impl log::Log for Catch {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.level() <= log::Level::Warn
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
                lines.push(r.args().to_string());
            }
        }
        fn flush(&self) {}
    }
    static CATCH: std::sync::OnceLock<&'static Catch> = std::sync::OnceLock::new();
    let catch = CATCH.get_or_init(|| {
        let catch: &'static Catch = Box::leak(Box::new(Catch(Mutex::new(Vec::new()))));
        log::set_logger(catch).expect("no other logger in the test process");
        log::set_max_level(log::LevelFilter::Warn);
        catch
    });
    &catch.0
}

#[test]
fn push_logs_once_when_the_server_goes_down_and_once_when_it_is_back() -> Result<()> {
    let _children = children::guard();
    let lines = warnings();
    let p = profiles()?;
    let addr = receiver::unused_addr()?;
    let url = format!("http://{addr}");
    let ours = || {
        let lines = lines.lock().unwrap_or_else(|e| e.into_inner());
        lines
            .iter()
            .filter(|l| l.contains(&url))
            .cloned()
            .collect::<Vec<_>>()
    };
    let pusher = start(&config(&url))?;
    pusher.push(profile("memory", &[("service_name", "s")], &p.heap));
    // First failure, then a retry after ~1 s and another after ~2 s more.
    wait_stats(&pusher, Duration::from_secs(10), |s| s.failed_attempts >= 3)?;
    let down = ours();
    assert_eq!(down.len(), 1, "{down:?}");
    assert!(down[0].contains("failed"), "{down:?}");
    let receiver = Receiver::start_on(addr)?;
    wait_stats(&pusher, Duration::from_secs(20), |s| s.sent == 1)?;
    pusher.push(profile("memory", &[("service_name", "s")], &p.heap));
    wait_stats(&pusher, Duration::from_secs(10), |s| s.sent == 2)?;
    let all = ours();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all[1].contains("works again"), "{all:?}");
    pusher.shutdown(Duration::from_secs(1));
    drop(receiver);
    Ok(())
}
