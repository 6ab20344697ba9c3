//! The live page's data and the report page, without a browser (tests/it/web.rs drives the
//! page itself in Chromium): `attach --web` serves a heap-in-use tree of a leaking program
//! that holds its leaking function and grows, its allocations, the diff against attach, the
//! finding, the goroutine groups when asked; the output directory gets index.html with the
//! same data inside and timeline.svg; the agent serves its targets and each target's page.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use gotrace_tests::{agent::Agent, children, fixtures, go, GoProcess, Toolchain, Variant};
use serde_json::Value;

/// The value of every node named `name` in a flamegraph tree, added up.
pub fn frame_value(node: &Value, name: &str) -> i64 {
    let own = if node["name"] == name {
        node["value"].as_i64().unwrap_or(0)
    } else {
        0
    };
    own + node["children"]
        .as_array()
        .map_or(0, |c| c.iter().map(|c| frame_value(c, name)).sum())
}

/// The first node named `name`, depth first.
fn frame<'v>(node: &'v Value, name: &str) -> Option<&'v Value> {
    if node["name"] == name {
        return Some(node);
    }
    node["children"]
        .as_array()?
        .iter()
        .find_map(|c| frame(c, name))
}

fn page(server: &Agent, path: &str) -> Result<Value> {
    Ok(serde_json::from_slice(&server.ok(path)?)?)
}

/// Asks `path` until `done` holds (within `within`).
fn page_until(
    server: &Agent,
    path: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let begin = Instant::now();
    loop {
        let p = page(server, path)?;
        if done(&p) {
            return Ok(p);
        }
        if begin.elapsed() > within {
            bail!("{path}: not as expected within {within:?}: {p:#}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The data `index.html` holds for the page.
pub fn embedded_data(index: &Path) -> Result<Value> {
    let html = std::fs::read_to_string(index)?;
    let start = html
        .find(r#"id="gotrace-data">"#)
        .context("index.html has no data")?
        + r#"id="gotrace-data">"#.len();
    let end = start
        + html[start..]
            .find("</script>")
            .context("unterminated data")?;
    Ok(serde_json::from_str(
        &html[start..end].replace("<\\/", "</"),
    )?)
}

#[test]
fn attach_web_serves_the_growing_heap_and_the_report_page_holds_it() -> Result<()> {
    let _children = children::guard();
    let tc = Toolchain::find(go::NEWEST)?;
    let exe = fixtures::build("heapgrow", tc, Variant::Default)?;
    let proc = GoProcess::start(&exe, &["-mode", "leak"])?;
    let out = fixtures::scratch_dir("live-web")?.join("out");
    let out_arg = out.display().to_string();
    let web = Agent::attach_web(
        &gotrace_tests::gotrace_bin(),
        proc.pid(),
        &["-q", "--interval", "500ms", "-o", &out_arg],
    )?;

    let leaking = |p: &Value| frame_value(&p["flames"]["inuse_space"], "main.handle");
    let first = page_until(&web, "/api/page", Duration::from_secs(30), |p| {
        leaking(p) > 0
    })?;
    assert_eq!(first["mode"], "live");
    assert_eq!(first["report"]["target"]["pid"], proc.pid());
    let before = leaking(&first);
    let grown = page_until(&web, "/api/page", Duration::from_secs(30), |p| {
        leaking(p) > before + (4 << 20)
    })?;
    // The allocations of the latest GC interval: the leaking handler allocates at every
    // request.
    let allocating = page_until(&web, "/api/page", Duration::from_secs(30), |p| {
        frame_value(&p["flames"]["alloc_space"], "main.handle") > 0
    })?;
    assert!(leaking(&allocating) >= leaking(&grown));
    let grown = allocating;
    // Only the ones asked for are read: a walk of every goroutine.
    assert!(grown["groups"].is_null() && grown["flames"]["goroutines"].is_null());

    let found = page_until(&web, "/api/page", Duration::from_secs(60), |p| {
        p["report"]["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["pattern"] == "heap-growth"))
    })?;
    let f = found["report"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["pattern"] == "heap-growth")
        .unwrap();
    assert_eq!(f["site"]["function"], "main.handle", "{f:#}");

    let diff = page(&web, "/api/page?diff=attach")?;
    assert_eq!(
        diff["diff_bases"][0]["id"], "attach",
        "{:#}",
        diff["diff_bases"]
    );
    let d = frame(&diff["diff"]["inuse_space"], "main.handle").context("diff: main.handle")?;
    assert!(d["delta"].as_i64().unwrap() >= 4 << 20, "{d:#}");
    assert!(d["delta"].as_i64() <= d["value"].as_i64(), "{d:#}");

    let asked = page_until(
        &web,
        "/api/page?goroutines=1",
        Duration::from_secs(10),
        |p| p["groups"].as_array().is_some_and(|g| !g.is_empty()),
    )?;
    let groups = asked["groups"].as_array().unwrap();
    let main = groups
        .iter()
        .find(|g| {
            g["frames"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["function"] == "main.main")
        })
        .with_context(|| format!("no group runs main.main: {groups:#?}"))?;
    assert!(
        main["count"].as_u64() >= Some(1) && main["state"].is_string(),
        "{main:#}"
    );
    let live = asked["report"]["goroutines"]["live_at_end"].as_i64();
    assert_eq!(
        asked["flames"]["goroutines"]["value"].as_i64(),
        live,
        "{asked:#}"
    );

    // The page itself, and nothing but loopback.
    let html = String::from_utf8(web.ok("/")?)?;
    assert!(html.contains("<!--gotrace-data-->"), "{html}");
    ensure!(web.url.starts_with("http://127.0.0.1:"), "{}", web.url);

    let status = web.stop()?;
    assert!(status.success(), "{status}");
    let data = embedded_data(&out.join("index.html"))?;
    assert_eq!(data["mode"], "report");
    assert!(frame_value(&data["flames"]["inuse_space"], "main.handle") >= leaking(&grown));
    assert!(
        data["groups"].as_array().is_some_and(|g| !g.is_empty()),
        "{data:#}"
    );
    assert!(frame(&data["diff"]["inuse_space"], "main.handle").is_some());
    // A point per look (every 500 ms) over the few seconds the checks above took.
    assert!(data["report"]["timeline"].as_array().unwrap().len() >= 4);
    let svg = std::fs::read_to_string(out.join("timeline.svg"))?;
    assert!(svg.starts_with("<svg") && svg.contains("GC goal") && svg.contains("goroutines: "));
    Ok(())
}

#[test]
fn a_busy_web_address_fails_before_attaching() -> Result<()> {
    let _children = children::guard();
    let busy = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = busy.local_addr()?.to_string();
    let tc = Toolchain::find(go::NEWEST)?;
    let proc = GoProcess::start(
        &fixtures::build("heapgrow", tc, Variant::Default)?,
        &["-mode", "steady"],
    )?;
    let out = children::output(Command::new(gotrace_tests::gotrace_bin()).args([
        "attach",
        &proc.pid().to_string(),
        "-d",
        "2s",
        "--web",
        &addr,
    ]))?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&addr) && err.contains("--web"), "{err}");
    assert!(!err.contains("attached"), "{err}");
    Ok(())
}

#[test]
fn the_agent_serves_its_targets_and_each_targets_page() -> Result<()> {
    let _children = children::guard();
    let tc = Toolchain::find(go::NEWEST)?;
    let dir = fixtures::scratch_dir("live-agent")?;
    let exe = dir.join("heapgrow");
    std::fs::copy(fixtures::build("heapgrow", tc, Variant::Default)?, &exe)?;
    let proc = GoProcess::start(&exe, &["-mode", "leak"])?;
    let agent = Agent::start(&[
        "--include",
        &format!("{}/*", dir.display()),
        "--min-age",
        "1s",
    ])?;
    let target = agent.wait_for(proc.pid(), Duration::from_secs(15))?;
    let id = target["id"].as_str().context("id")?.to_string();

    let list = page(&agent, "/api/page")?;
    assert_eq!(list["mode"], "agent");
    let entry = list["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .with_context(|| format!("{list:#}"))?;
    assert_eq!(entry["url"], format!("targets/{id}/"));
    assert_eq!(entry["labels"]["exe"], "heapgrow");

    let p = page_until(
        &agent,
        &format!("/targets/{id}/api/page?goroutines=1"),
        Duration::from_secs(30),
        |p| frame_value(&p["flames"]["inuse_space"], "main.handle") > 0,
    )?;
    assert_eq!(p["mode"], "live");
    assert!(
        p["groups"].as_array().is_some_and(|g| !g.is_empty()),
        "{p:#}"
    );

    // A browser gets the page at / and at a target's directory; curl the list of endpoints.
    let html = |path: &str| -> Result<String> {
        let out = children::output(
            Command::new("curl")
                .args(["-sS", "-L", "-H", "Accept: text/html,*/*"])
                .arg(format!("{}{path}", agent.url)),
        )?;
        Ok(String::from_utf8(out.stdout)?)
    };
    assert!(html("/")?.starts_with("<!doctype html>"));
    assert!(html(&format!("/targets/{id}"))?.starts_with("<!doctype html>"));
    let text = String::from_utf8(agent.ok("/")?)?;
    assert!(text.starts_with("gotrace agent"), "{text}");
    let (status, _) = agent.get("/targets/1-1/api/page")?;
    assert_eq!(status, 404);
    agent.stop()?;
    Ok(())
}
