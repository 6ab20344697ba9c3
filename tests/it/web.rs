//! gotrace's page in headless Chromium, fed by gotrace itself: `gotrace attach PID --web` on a
//! leaking fixture serves a page that loads without a console error, draws the leaking
//! function in its flamegraph and redraws it bigger, shows the finding as it appears and the
//! blocked goroutines in the groups table; the output directory's `index.html`, opened as
//! file:// after the session, shows the same; `gotrace agent`'s page lists its targets with
//! their labels and findings, each linking to its live page. Screenshots are kept under
//! `target/test-artefacts/<test>/`. (`web_page.rs` tests the page on hand-written data.)

use std::{path::PathBuf, time::Duration};

use anyhow::{ensure, Context, Result};
use gotrace_tests::{
    agent::Agent, browser::Browser, children, fixtures, go, GoProcess, Toolchain, Variant,
};
use serde_json::json;

/// `gotrace attach PID --web 127.0.0.1:0` writing into a fresh output directory.
fn attach_web(pid: u32, tag: &str) -> Result<(Agent, PathBuf)> {
    let out = fixtures::scratch_dir(tag)?.join("out");
    let out_arg = out.display().to_string();
    let web = Agent::attach_web(
        &gotrace_tests::gotrace_bin(),
        pid,
        &["-q", "--interval", "500ms", "--out", &out_arg],
    )?;
    Ok((web, out))
}

/// Ends the session as Ctrl-C would; its files are written when it has exited.
fn stop(web: Agent) -> Result<()> {
    let status = web.stop()?;
    ensure!(status.success(), "gotrace attach ended with {status}");
    Ok(())
}

/// The rendered value of the first frame of #flamegraph whose name starts with arguments[0]
/// (d3 keeps each frame's datum on its element), or null.
const FRAME_VALUE: &str = "const g = [...document.querySelectorAll('#flamegraph g.frame')].find(g => (g.getAttribute('name') || '').startsWith(arguments[0])); return g ? g.__data__.data.value : null;";

/// Waits until the flamegraph shown draws a frame named `prefix…` worth more than `above`.
fn frame_above(b: &Browser, prefix: &str, above: u64, within: Duration) -> Result<u64> {
    let script = FRAME_VALUE.replace("arguments[0]", &json!(prefix).to_string());
    let v = b.wait_for(
        &format!("{prefix} above {above} in the flamegraph"),
        within,
        &format!("const v = (() => {{ {script} }})(); return v > {above} ? v : null;"),
    )?;
    v.as_u64().context("a frame value")
}

fn assert_no_console_errors(b: &Browser) -> Result<()> {
    let errors = b.console_errors()?;
    ensure!(errors.is_empty(), "console errors: {errors:#?}");
    Ok(())
}

/// Waits for a finding of `pattern` at a site of `function` in #findings.
fn finding_shown(b: &Browser, pattern: &str, function: &str, within: Duration) -> Result<()> {
    b.wait_for(
        &format!("the {pattern} finding"),
        within,
        &format!(
            "const f = document.querySelector('#findings .finding[data-pattern={}]'); return f && f.innerText.includes({}) ? f.innerText : null;",
            json!(pattern),
            json!(function)
        ),
    )?;
    Ok(())
}

#[test]
fn heap_leak_on_the_live_page_and_in_the_report() -> Result<()> {
    let _children = children::guard();
    let exe = fixtures::build("heapgrow", Toolchain::find(go::NEWEST)?, Variant::Default)?;
    let proc = GoProcess::start(&exe, &["-mode", "leak"])?;
    let (web, out) = attach_web(proc.pid(), "web-heap")?;
    let b = Browser::start("web_heap_leak")?;
    b.goto(&format!("{}/", web.url))?;

    // The heap in use: the leaking handler, bigger at a later look.
    let first = frame_above(&b, "main.handle", 0, Duration::from_secs(30))?;
    ensure!(b.text("#top-table")?.contains("main.handle"));
    ensure!(
        b.text("#status")?.starts_with("live"),
        "{}",
        b.text("#status")?
    );
    ensure!(b.text("#target")?.contains(&proc.pid().to_string()));
    b.screenshot("flamegraph-first")?;
    let later = frame_above(
        &b,
        "main.handle",
        first + (2 << 20),
        Duration::from_secs(30),
    )?;
    b.screenshot("flamegraph-later")?;
    eprintln!("main.handle in use: {first} then {later} bytes");

    b.click("[data-view=findings]")?;
    finding_shown(&b, "heap-growth", "main.handle", Duration::from_secs(60))?;
    b.screenshot("findings")?;
    b.click("[data-view=timelines]")?;
    b.wait_for(
        "the heap timeline",
        Duration::from_secs(10),
        "const c = document.querySelector('#timelines .chart[data-chart=heap]'); return c && +c.dataset.points > 2;",
    )?;
    b.screenshot("timelines")?;
    b.click("[data-view=diff]")?;
    b.wait_for(
        "main.handle grown since attach",
        Duration::from_secs(20),
        "return document.querySelector('#diff-table tbody') && document.querySelector('#diff-table tbody').innerText.includes('main.handle');",
    )?;
    b.screenshot("diff")?;
    assert_no_console_errors(&b)?;

    // The report: the same, from the file alone.
    stop(web)?;
    let index = out.join("index.html");
    b.goto(&format!("file://{}", index.display()))?;
    // At least what the live page showed last: the leak only grows.
    frame_above(&b, "main.handle", later - 1, Duration::from_secs(10))?;
    ensure!(
        b.text("#status")?.starts_with("report"),
        "{}",
        b.text("#status")?
    );
    b.click("[data-view=findings]")?;
    finding_shown(&b, "heap-growth", "main.handle", Duration::from_secs(5))?;
    b.screenshot("report-findings")?;
    b.click("[data-view=timelines]")?;
    b.wait_for(
        "the report's heap timeline",
        Duration::from_secs(10),
        "const c = document.querySelector('#timelines .chart[data-chart=heap]'); return c && +c.dataset.points > 2;",
    )?;
    b.screenshot("report-timelines")?;
    assert_no_console_errors(&b)
}

#[test]
fn goroutine_leak_on_the_live_page_and_in_the_report() -> Result<()> {
    let _children = children::guard();
    let exe = fixtures::build("goleak", Toolchain::find(go::NEWEST)?, Variant::Default)?;
    let proc = GoProcess::start(&exe, &["-mode", "leak"])?;
    let (web, out) = attach_web(proc.pid(), "web-goroutines")?;
    let b = Browser::start("web_goroutine_leak")?;
    b.goto(&format!("{}/", web.url))?;

    // The goroutines by stack: the blocked workers, more of them at a later look.
    b.wait_for(
        "the page's first data",
        Duration::from_secs(30),
        "return document.getElementById('status').textContent.startsWith('live');",
    )?;
    b.click("[data-kind=goroutines]")?;
    let first = frame_above(&b, "main.handle.func", 0, Duration::from_secs(30))?;
    let later = frame_above(&b, "main.handle.func", first + 20, Duration::from_secs(30))?;
    eprintln!("goroutines in main.handle.func*: {first} then {later}");
    b.screenshot("goroutine-flamegraph")?;

    // The groups: the blocked senders, found by the filter.
    b.click("[data-view=groups]")?;
    b.type_into("#groups-filter", "chan send main.handle")?;
    let blocked = b.wait_for(
        "the blocked group",
        Duration::from_secs(30),
        "const r = [...document.querySelectorAll('#groups tr.group')].find(r => r.dataset.state === 'chan send'); return r ? r.innerText : null;",
    )?;
    let blocked = blocked.as_str().unwrap_or_default();
    ensure!(
        blocked.contains("main.handle.func") && blocked.contains("main.handle ("),
        "{blocked}"
    );
    b.screenshot("groups")?;

    b.click("[data-view=findings]")?;
    finding_shown(&b, "goroutine-leak", "main.handle", Duration::from_secs(60))?;
    b.screenshot("findings")?;
    assert_no_console_errors(&b)?;

    stop(web)?;
    b.goto(&format!("file://{}", out.join("index.html").display()))?;
    b.wait_for(
        "the report",
        Duration::from_secs(10),
        "return document.getElementById('status').textContent.startsWith('report');",
    )?;
    b.click("[data-view=findings]")?;
    finding_shown(&b, "goroutine-leak", "main.handle", Duration::from_secs(5))?;
    b.click("[data-view=groups]")?;
    b.wait_for(
        "the report's blocked group",
        Duration::from_secs(5),
        "return [...document.querySelectorAll('#groups tr.group')].some(r => r.dataset.state === 'chan send' && r.innerText.includes('main.handle.func'));",
    )?;
    b.screenshot("report-groups")?;
    b.click("[data-view=flame]")?;
    b.click("[data-kind=goroutines]")?;
    // At least as many as the live page showed last: the leak only grows.
    frame_above(&b, "main.handle.func", later - 1, Duration::from_secs(10))?;
    b.screenshot("report-goroutine-flamegraph")?;
    assert_no_console_errors(&b)
}

#[test]
fn the_agents_page_lists_its_targets_and_links_to_each_ones_live_page() -> Result<()> {
    let _children = children::guard();
    let dir = fixtures::scratch_dir("web-agent")?;
    let exe = dir.join("heapgrow");
    std::fs::copy(
        fixtures::build("heapgrow", Toolchain::find(go::NEWEST)?, Variant::Default)?,
        &exe,
    )?;
    let proc = GoProcess::start(&exe, &["-mode", "leak"])?;
    let agent = Agent::start(&[
        "--include",
        &format!("{}/*", dir.display()),
        "--min-age",
        "1s",
    ])?;
    let id = agent.wait_for(proc.pid(), Duration::from_secs(15))?["id"]
        .as_str()
        .context("a target id")?
        .to_string();
    let b = Browser::start("web_agent")?;
    b.goto(&format!("{}/", agent.url))?;

    // The list: the target with its labels, then its finding.
    let row = format!("#targets tr.target[data-id={}]", json!(id));
    let text = b.wait_for(
        "the target in the agent's list",
        Duration::from_secs(20),
        &format!(
            "const r = document.querySelector({}); return r ? r.innerText : null;",
            json!(row)
        ),
    )?;
    let text = text.as_str().unwrap_or_default();
    for s in ["heapgrow", &format!("pid={}", proc.pid()), "exe=heapgrow"] {
        ensure!(text.contains(s), "{s:?} not in {text}");
    }
    b.wait_for(
        "the target's heap-growth finding in the list",
        Duration::from_secs(60),
        &format!("const r = document.querySelector({}); return r && r.innerText.includes('heap-growth at main.handle');", json!(row)),
    )?;
    b.screenshot("targets")?;

    // Its link opens its live page, fed by its own api/page.
    b.click(&format!("{row} a"))?;
    frame_above(&b, "main.handle", 0, Duration::from_secs(30))?;
    let path = b.eval("return location.pathname;", &[])?;
    ensure!(path == format!("/targets/{id}/").as_str(), "{path}");
    ensure!(b.text("#target")?.contains(&proc.pid().to_string()));
    b.screenshot("target")?;
    assert_no_console_errors(&b)
}
