//! The web page (`tracer-user/web/`, embedded as `gotrace::export::page`) in headless Chromium,
//! on data written here in the shape of `api/page`: as the offline report (the data inline,
//! opened as file://), as the live view (served with an `api/page` that changes every tick) and
//! as the agent's target list. What gotrace itself serves and writes is tested in `web.rs`.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{anyhow, ensure, Result};
use gotrace::export::page;
use gotrace_tests::browser::Browser;
use serde_json::{json, Value};

/// Generous: the suite runs many tests at once on few cores.
const WAIT: Duration = Duration::from_secs(20);

fn node(name: &str, value: u64, children: Vec<Value>) -> Value {
    json!({"name": name, "value": value, "children": children})
}

fn dnode(name: &str, value: u64, delta: i64, children: Vec<Value>) -> Value {
    json!({"name": name, "value": value, "delta": delta, "children": children})
}

/// A program whose `main.leak` holds 1 MiB more at each tick `n`, with goroutines blocked in
/// `main.worker`, one finding from tick 2 on.
fn sample(mode: &str, n: u64) -> Value {
    let leak = (n + 1) << 20;
    let inuse = node(
        "total",
        leak + 500_000,
        vec![
            node(
                "main.main",
                leak + 300_000,
                vec![
                    node(
                        "main.leak",
                        leak,
                        vec![node("main.makeBuf", leak / 2, vec![])],
                    ),
                    node("main.serve", 300_000, vec![]),
                ],
            ),
            node("runtime.main", 200_000, vec![]),
        ],
    );
    let alloc = node(
        "total",
        9_000_000,
        vec![node(
            "main.main",
            9_000_000,
            vec![
                node("main.leak", 5_000_000, vec![]),
                node("encoding/json.Marshal", 4_000_000, vec![]),
            ],
        )],
    );
    let goroutines = node(
        "total",
        105,
        vec![node(
            "runtime.gopark",
            105,
            vec![
                node("main.worker", 100, vec![]),
                node("main.main", 5, vec![]),
            ],
        )],
    );
    let timeline: Vec<Value> = (0..=n * 4)
        .map(|i| {
            json!({"t_s": i as f64 * 0.25, "heap_inuse": (i + 4) << 18, "heap_goal": (i + 8) << 18,
                   "heap_live": (i + 3) << 18, "goroutines": 5 + 20 * i, "stack_bytes": 8192 * (5 + 20 * i),
                   "gc_cycles": i, "gc_forced": i / 4})
        })
        .collect();
    let findings = if n >= 2 {
        json!([{"pattern": "goroutine-leak",
                "site": {"function": "main.spawn", "file": "/src/main.go", "line": 30},
                "stack": [{"function": "main.worker", "file": "/src/main.go", "line": 12}],
                "evidence": {"signal": "growing", "live": 100, "blocked": 100, "oldest_blocked_s": 10.0,
                             "wait_reason": "chan receive"},
                "hint": "goroutines block receiving from a channel nobody sends on any more"}])
    } else {
        json!([])
    };
    let frame = |f: &str, file: &str, line: u32| json!({"function": f, "file": file, "line": line, "offset": 4});
    let groups = json!([
        {"count": 100, "goids": (10..110).collect::<Vec<_>>(), "state": "chan receive", "max_waiting_s": 12.5,
         "frames": [frame("runtime.gopark", "/go/src/runtime/proc.go", 424),
                    frame("runtime.chanrecv", "/go/src/runtime/chan.go", 600),
                    frame("main.worker", "/src/main.go", 12),
                    frame("main.spawn.func1", "/src/main.go", 31)],
         "created_by": {"function": "main.spawn", "file": "/src/main.go", "line": 30, "offset": 20, "parent_goid": 1}},
        {"count": 1, "goids": [1], "state": "sleep", "max_waiting_s": null,
         "frames": [frame("time.Sleep", "/go/src/runtime/time.go", 300), frame("main.main", "/src/main.go", 40)],
         "created_by": null},
    ]);
    let grown = leak as i64 - (1 << 20);
    let diff = dnode(
        "total",
        leak + 500_000,
        grown,
        vec![dnode(
            "main.main",
            leak + 300_000,
            grown,
            vec![
                dnode("main.leak", leak, grown, vec![]),
                dnode("main.serve", 300_000, 0, vec![]),
            ],
        )],
    );
    json!({
        "mode": mode,
        "tick_s": 0.5,
        "generated_at": "2026-12-02T13:00:12Z",
        "targets": null,
        "report": {
            "target": {"pid": 4242, "exe": "/srv/heapgrow", "go_version": "go1.27.3",
                       "module": "example.com/heapgrow", "stripped": false},
            "session": {"started_at": "2026-12-02T13:00:00Z", "duration_s": n as f64 * 0.5, "end_reason": null},
            "findings": findings,
            "heap": {"inuse_bytes": leak + 500_000, "alloc_bytes": 9_000_000, "top": []},
            "goroutines": {"live_by_site": [], "live_at_end": 105},
            "timeline": timeline,
        },
        "flames": {"inuse_space": inuse, "alloc_space": alloc, "goroutines": goroutines},
        "groups": groups,
        "diff_bases": [{"id": "attach", "label": "at attach"}, {"id": "60", "label": "1 min ago"}],
        "diff": {"base": "attach", "label": "in use now vs at attach", "inuse_space": diff},
    })
}

/// The names of the flamegraph's frames in `css` (a container).
const FRAME_NAMES: &str = "return [...document.querySelectorAll(arguments[0] + ' g.frame')].map(g => g.getAttribute('name'));";

/// The rendered value of the frame named arguments[0] in #flamegraph (d3 keeps its datum on
/// the element), or null.
const FRAME_VALUE: &str = "const g = [...document.querySelectorAll('#flamegraph g.frame')].find(g => g.getAttribute('name') === arguments[0]); return g ? g.__data__.data.value : null;";

fn strings(v: Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

fn assert_no_console_errors(b: &Browser) -> Result<()> {
    let errors = b.console_errors()?;
    ensure!(errors.is_empty(), "console errors: {errors:#?}");
    Ok(())
}

#[test]
fn report_opened_as_a_file_shows_every_view() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let dir = tempfile::tempdir()?;
    let index = dir.path().join("index.html");
    std::fs::write(&index, page::with_data(&sample("report", 3).to_string()))?;
    let b = Browser::start("web_page_report")?;
    b.goto(&format!("file://{}", index.display()))?;

    // The flamegraph: every function of the tree is a frame, and is text in the top table.
    b.wait_for(
        "the flamegraph's frames",
        WAIT,
        "return document.querySelectorAll('#flamegraph g.frame').length >= 6;",
    )?;
    let names = strings(b.eval(FRAME_NAMES, &[json!("#flamegraph")])?);
    for f in ["main.main", "main.leak", "main.makeBuf", "runtime.main"] {
        ensure!(names.iter().any(|n| n == f), "{f} not in {names:?}");
    }
    let top = b.text("#top-table")?;
    ensure!(top.contains("main.leak") && top.contains("MiB"), "{top}");
    // The first row has the biggest self value: main.leak's 4 MiB less makeBuf's 2 MiB ties
    // with makeBuf's own 2 MiB, and the bigger total comes first.
    let first = b.text("#top-table tbody tr")?;
    ensure!(
        first.contains("2.00 MiB") && first.contains("main.leak"),
        "{first}"
    );
    ensure!(
        b.text("#status")?.starts_with("report"),
        "{}",
        b.text("#status")?
    );
    ensure!(b.text("#stats")?.contains("heap in use"));
    b.screenshot("flamegraph")?;

    b.click("[data-kind=alloc_space]")?;
    b.wait_for(
        "the allocation flamegraph",
        WAIT,
        "return [...document.querySelectorAll('#flamegraph g.frame')].some(g => g.getAttribute('name') === 'encoding/json.Marshal');",
    )?;
    ensure!(b.text("#top-table")?.contains("encoding/json.Marshal"));

    b.click("[data-view=findings]")?;
    let findings = b.text("#findings")?;
    for s in [
        "goroutine-leak",
        "main.spawn (/src/main.go:30)",
        "wait_reason=chan receive",
        "hint: goroutines block receiving",
    ] {
        ensure!(findings.contains(s), "{s:?} not in {findings}");
    }
    ensure!(b.text("#findings-count")? == "1");
    b.screenshot("findings")?;

    b.click("[data-view=groups]")?;
    let rows =
        "return [...document.querySelectorAll('#groups tr.group')].map(r => r.dataset.state);";
    ensure!(strings(b.eval(rows, &[])?) == ["chan receive", "sleep"]);
    let groups = b.text("#groups")?;
    ensure!(
        groups.contains("main.worker")
            && groups.contains("main.spawn (/src/main.go:30) in goroutine 1"),
        "{groups}"
    );
    // The filter matches words over state, frames and creation site.
    b.type_into("#groups-filter", "time.sleep")?;
    b.wait_for(
        "the filter to keep the sleeping group",
        WAIT,
        "return document.querySelectorAll('#groups tr.group').length === 1 && document.querySelector('#groups tr.group').dataset.state === 'sleep';",
    )?;
    b.type_into("#groups-filter", "main.spawn chan")?;
    b.wait_for(
        "the filter to keep the blocked group",
        WAIT,
        "return document.querySelectorAll('#groups tr.group').length === 1 && document.querySelector('#groups tr.group').dataset.state === 'chan receive';",
    )?;
    ensure!(b
        .text("#groups-summary")?
        .starts_with("1 of 2 groups, 100 of 101"));
    b.type_into("#groups-filter", "nothing-like-this")?;
    b.wait_for(
        "the filter to keep nothing",
        WAIT,
        "return document.querySelectorAll('#groups tr.group').length === 0 && !document.getElementById('groups-empty').hidden;",
    )?;
    b.screenshot("groups")?;

    b.click("[data-view=timelines]")?;
    let charts = b.wait_for(
        "four charts",
        WAIT,
        "const c = [...document.querySelectorAll('#timelines .chart')]; return c.length === 4 && c.every(e => e.querySelector('canvas')) ? c.map(e => e.dataset.chart + ':' + e.dataset.points) : null;",
    )?;
    ensure!(
        strings(charts) == ["heap:13", "goroutines:13", "stacks:13", "gc:13"],
        "charts"
    );
    b.screenshot("timelines")?;

    b.click("[data-view=diff]")?;
    b.wait_for(
        "the differential flamegraph",
        WAIT,
        "return [...document.querySelectorAll('#diff g.frame')].some(g => g.getAttribute('name') === 'main.leak');",
    )?;
    let grew = b.text("#diff-table tbody tr")?;
    ensure!(
        grew.contains("main.leak") && grew.contains("+3.00 MiB"),
        "{grew}"
    );
    // Grown frames are red in the differential colours, unchanged ones grey.
    let fills = b.eval(
        "const f = n => [...document.querySelectorAll('#diff g.frame')].find(g => g.getAttribute('name') === n).querySelector('rect').getAttribute('fill'); return [f('main.leak'), f('main.serve')];",
        &[],
    )?;
    let fills = strings(fills);
    ensure!(
        fills[0] != fills[1] && fills[1] == "rgb(220,220,220)",
        "{fills:?}"
    );
    b.screenshot("diff")?;
    assert_no_console_errors(&b)
}

/// A loopback server of the page and an `api/page` whose tick advances at each request (the
/// agent's layout too: `/` the list, `/targets/ID/` a target).
struct PageServer {
    addr: std::net::SocketAddr,
    server: Arc<tiny_http::Server>,
    /// Set: `api/page` answers 503, as a gotrace going away would.
    failing: Arc<AtomicBool>,
    /// The query strings `api/page` was asked with.
    queries: Arc<Mutex<Vec<String>>>,
    tick: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl PageServer {
    fn start(root_mode: &'static str) -> Result<PageServer> {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").map_err(|e| anyhow!("{e}"))?);
        let addr = server.server_addr().to_ip().unwrap();
        let queries: Arc<Mutex<Vec<String>>> = Arc::default();
        let tick = Arc::new(AtomicU64::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (server, queries, tick) = (server.clone(), queries.clone(), tick.clone());
            let failing = failing.clone();
            move || {
                for rq in server.incoming_requests() {
                    let url = rq.url().to_string();
                    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
                    let html =
                        tiny_http::Header::from_bytes("Content-Type", "text/html; charset=utf-8")
                            .unwrap();
                    let js =
                        tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap();
                    let answer = match path {
                        _ if path.ends_with("api/page") && failing.load(Ordering::SeqCst) => {
                            tiny_http::Response::from_string("going away").with_status_code(503)
                        }
                        "/" | "/targets/1234-5678/" => {
                            tiny_http::Response::from_string(page::PAGE).with_header(html)
                        }
                        "/api/page" if root_mode == "agent" => {
                            let d = json!({"mode": "agent", "tick_s": 0.5, "generated_at": "2026-12-02T13:00:00Z",
                                "targets": [{"id": "1234-5678", "url": "targets/1234-5678/",
                                    "labels": {"service_name": "heapgrow", "exe": "/srv/heapgrow", "pid": "1234"},
                                    "findings": [{"pattern": "heap-growth", "site": "main.leak (main.go:12)"}],
                                    "heap_inuse_bytes": 3 << 20, "goroutines": 45}]});
                            tiny_http::Response::from_string(d.to_string()).with_header(js)
                        }
                        "/api/page" | "/targets/1234-5678/api/page" => {
                            queries.lock().unwrap().push(query.to_string());
                            let n = tick.fetch_add(1, Ordering::SeqCst);
                            let mut d = sample("live", n);
                            if !query.contains("goroutines=1") {
                                d["flames"]["goroutines"] = Value::Null;
                                d["groups"] = Value::Null;
                            }
                            if !query.contains("diff=") {
                                d["diff"] = Value::Null;
                            }
                            tiny_http::Response::from_string(d.to_string()).with_header(js)
                        }
                        _ => tiny_http::Response::from_string("not found").with_status_code(404),
                    };
                    let _ = rq.respond(answer);
                }
            }
        });
        Ok(PageServer {
            addr,
            server,
            failing,
            queries,
            tick,
            thread: Some(thread),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn live_view_keeps_zoom_and_search_across_updates() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let srv = PageServer::start("live")?;
    let b = Browser::start("web_page_live")?;
    b.goto(&srv.url("/"))?;
    // Drawn, its transition over (a frame's width grows from nothing): clickable.
    b.wait_for(
        "main.leak drawn in the flamegraph",
        WAIT,
        "const r = document.querySelector(\"#flamegraph g.frame[name='main.leak'] rect\"); return r && +r.getAttribute('width') > 100;",
    )?;
    ensure!(
        b.text("#status")?.starts_with("live · updated"),
        "{}",
        b.text("#status")?
    );

    // Zoom into main.leak with a click, search for makeBuf by typing.
    b.click("#flamegraph g.frame[name='main.leak'] rect")?;
    b.type_into("#flame-search", "makebuf")?;
    let before = b
        .eval(FRAME_VALUE, &[json!("main.leak")])?
        .as_u64()
        .unwrap();
    let renders = b.eval(
        "return +document.getElementById('flamegraph').dataset.renders;",
        &[],
    )?;
    let renders = renders.as_u64().unwrap();
    b.wait_for(
        "two more ticks drawn",
        WAIT,
        &format!(
            "return +document.getElementById('flamegraph').dataset.renders >= {};",
            renders + 2
        ),
    )?;
    // Give the last redraw's transition (300 ms) time to end before measuring the frames.
    std::thread::sleep(Duration::from_millis(600));
    let after = b
        .eval(FRAME_VALUE, &[json!("main.leak")])?
        .as_u64()
        .unwrap();
    ensure!(
        after > before,
        "main.leak did not grow on screen: {before} then {after}"
    );
    let look = b.eval(
        "const svg = document.querySelector('#flamegraph svg'); \
         const w = n => { const g = [...svg.querySelectorAll('g.frame')].find(g => g.getAttribute('name') === n); return g ? +g.querySelector('rect').getAttribute('width') : null; }; \
         const fill = n => [...svg.querySelectorAll('g.frame')].find(g => g.getAttribute('name') === n).querySelector('rect').getAttribute('fill'); \
         return {svg: +svg.getAttribute('width'), leak: w('main.leak'), serve: w('main.serve'), makebuf: fill('main.makeBuf'), \
                 leakFill: fill('main.leak'), zoom: document.getElementById('flamegraph').dataset.zoom, \
                 search: document.getElementById('flame-search').value};",
        &[],
    )?;
    // Zoomed: main.leak spans the whole width, its sibling is gone; the search still
    // highlights makeBuf (d3-flame-graph's highlight colour) and only it.
    ensure!(look["zoom"] == "total > main.main > main.leak", "{look}");
    let (svg, leak) = (
        look["svg"].as_f64().unwrap(),
        look["leak"].as_f64().unwrap(),
    );
    ensure!((leak - svg).abs() < 1.0, "main.leak is not zoomed: {look}");
    ensure!(look["serve"].as_f64().unwrap_or(0.0) < 1.0, "{look}");
    ensure!(
        look["makebuf"] == "#E600E6" && look["leakFill"] != "#E600E6",
        "{look}"
    );
    ensure!(look["search"] == "makebuf", "{look}");
    b.screenshot("zoomed-and-searched")?;

    // The goroutine views ask for goroutines (and only they do), the diff for its base.
    ensure!(
        srv.queries.lock().unwrap().iter().all(|q| q.is_empty()),
        "{:?}",
        srv.queries.lock().unwrap()
    );
    b.click("[data-view=groups]")?;
    b.wait_for(
        "the goroutine groups",
        WAIT,
        "return document.querySelectorAll('#groups tr.group').length === 2;",
    )?;
    ensure!(srv
        .queries
        .lock()
        .unwrap()
        .iter()
        .any(|q| q == "goroutines=1"));
    b.click("[data-view=diff]")?;
    b.wait_for(
        "the diff against the attach",
        WAIT,
        "return [...document.querySelectorAll('#diff g.frame')].some(g => g.getAttribute('name') === 'main.leak');",
    )?;
    ensure!(srv
        .queries
        .lock()
        .unwrap()
        .iter()
        .any(|q| q == "diff=attach"));
    // A finding that appears is marked new.
    b.click("[data-view=findings]")?;
    b.wait_for(
        "the finding",
        WAIT,
        "return document.querySelector('#findings .finding[data-pattern=\"goroutine-leak\"]');",
    )?;
    assert_no_console_errors(&b)?;

    // The server fails: the page says so, keeps its data, and keeps trying.
    let ticks = srv.tick.load(Ordering::SeqCst);
    srv.failing.store(true, Ordering::SeqCst);
    b.wait_for(
        "the page to say the fetch failed",
        WAIT,
        "return document.getElementById('status').textContent.startsWith('cannot reach gotrace');",
    )?;
    ensure!(b.text("#findings")?.contains("goroutine-leak"));
    b.screenshot("fetch-failed")?;
    let errors = b.console_errors()?;
    ensure!(
        errors
            .iter()
            .all(|e| e.contains("api/page") && e.contains("503")),
        "other console errors than the failed fetches: {errors:#?}"
    );
    // Back again: so is the page.
    srv.failing.store(false, Ordering::SeqCst);
    b.wait_for(
        "the page to be live again",
        WAIT,
        "return document.getElementById('status').textContent.startsWith('live');",
    )?;
    ensure!(srv.tick.load(Ordering::SeqCst) > ticks);
    Ok(())
}

#[test]
fn agent_lists_targets_that_link_to_their_live_view() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let srv = PageServer::start("agent")?;
    let b = Browser::start("web_page_agent")?;
    b.goto(&srv.url("/"))?;
    b.wait_for(
        "the target row",
        WAIT,
        "return document.querySelector('#targets tr.target[data-id=\"1234-5678\"]');",
    )?;
    let row = b.text("#targets tr.target")?;
    for s in [
        "heapgrow",
        "pid=1234",
        "3.00 MiB",
        "45",
        "heap-growth at main.leak (main.go:12)",
    ] {
        ensure!(row.contains(s), "{s:?} not in {row}");
    }
    // Laid out as a table: each cell under its heading.
    let misplaced = b.eval(
        "const th = [...document.querySelectorAll('#targets thead th')]; \
         const td = [...document.querySelectorAll('#targets tr.target td')]; \
         const x = c => Math.round(c.getBoundingClientRect().left); \
         return td.length !== th.length || td.some((c, i) => Math.abs(x(c) - x(th[i])) > 1) ? {th: th.map(x), td: td.map(x)} : false;",
        &[],
    )?;
    ensure!(
        misplaced == false,
        "the target row's cells are not under their headings: {misplaced}"
    );
    // Only the targets tab is offered.
    let tabs = strings(b.eval("return [...document.querySelectorAll('nav [data-view]')].filter(b => !b.hidden).map(b => b.dataset.view);", &[])?);
    ensure!(tabs == ["targets"], "{tabs:?}");
    b.screenshot("targets")?;
    b.click("#targets tr.target a")?;
    b.wait_for(
        "the target's own page, fed from its own api/page",
        WAIT,
        &FRAME_VALUE.replace("arguments[0]", "'main.leak'"),
    )?;
    let url = b.eval("return location.pathname;", &[])?;
    ensure!(url == "/targets/1234-5678/", "{url}");
    b.screenshot("target")?;
    assert_no_console_errors(&b)
}

#[test]
fn report_without_profiles_says_so_in_every_view() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    // What a `--read-only` session of a program that never sampled its heap leaves, say.
    let mut data = sample("report", 0);
    data["flames"] = json!({"inuse_space": null, "alloc_space": null, "goroutines": null});
    data["groups"] = Value::Null;
    data["diff"] = Value::Null;
    data["diff_bases"] = json!([]);
    data["report"]["timeline"] = json!([]);
    data["report"]["findings"] = json!([]);
    let dir = tempfile::tempdir()?;
    let index = dir.path().join("index.html");
    std::fs::write(&index, page::with_data(&data.to_string()))?;
    let b = Browser::start("web_page_empty_report")?;
    b.goto(&format!("file://{}", index.display()))?;
    b.wait_for(
        "the report",
        WAIT,
        "return document.getElementById('status').textContent.startsWith('report');",
    )?;
    for (view, empty, says) in [
        ("flame", "#flame-empty", "No heap in use profile"),
        ("timelines", "#timelines-empty", "No timeline yet"),
        ("findings", "#findings", "No finding so far"),
        (
            "groups",
            "#groups-empty",
            "No goroutine groups in this report",
        ),
        ("diff", "#diff-empty", "No base to compare with yet"),
    ] {
        b.click(&format!("[data-view={view}]"))?;
        let text = b.text(empty)?;
        ensure!(text.contains(says), "{view}: {text:?}");
    }
    ensure!(b.text("#top-table tbody")?.is_empty());
    b.screenshot("empty")?;
    assert_no_console_errors(&b)
}
