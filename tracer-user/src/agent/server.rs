//! The agent's HTTP server: `/targets`, each target's profiles where Go's `net/http/pprof`
//! serves them (`/targets/ID/debug/pprof/heap`, …), so `go tool pprof`, Grafana Alloy and
//! Parca scrape them unchanged, `/metrics` for Prometheus and `/healthz`.

use std::{collections::BTreeMap, fmt::Write, sync::Arc, time::Duration};

use axum::{
    extract::{Path, Query, Request, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde::{Deserialize, Serialize};

use super::{config::AgentConfig, lock, metrics, Shared, Watched};
use crate::{
    error::{Error, Result},
    model::heap::AllocBaseline,
    pprof::{self, proto},
};

/// The longest `?seconds=` a delta profile may wait (Go's own server caps at its write
/// timeout; a scraper asks for 10-60 s).
const MAX_SECONDS: u64 = 300;

/// The bearer token from `--listen-token-file`, read once at start.
pub(crate) fn token(config: &AgentConfig) -> Result<Option<String>> {
    let Some(path) = &config.listen_token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("--listen-token-file {}: {e}", path.display())))?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(Error::Config(format!(
            "--listen-token-file {}: the file is empty (write the token into it)",
            path.display()
        )));
    }
    Ok(Some(token))
}

pub(crate) fn router(shared: Arc<Shared>, token: Option<String>) -> Router {
    let guarded = Router::new()
        .route("/", get(super::page::index))
        .route("/api/page", get(super::page::targets))
        .route("/targets/{id}/", get(super::page::target_page))
        // The page asks for `api/page` relative to itself: it must be seen from inside the dir.
        .route(
            "/targets/{id}",
            get(|Path(id): Path<String>| async move {
                axum::response::Redirect::permanent(&format!("/targets/{id}/"))
            }),
        )
        .route("/targets/{id}/api/page", get(super::page::target))
        .route("/targets", get(targets))
        .route("/sd", get(service_discovery))
        .route("/metrics", get(metrics_text))
        .route("/targets/{id}/debug/pprof/", get(pprof_index))
        .route("/targets/{id}/debug/pprof/{profile}", get(profile))
        // The same with the target as a query parameter, for scrapers that set one per target
        // (Prometheus-style `__param_target`, Parca) rather than a path prefix.
        .route("/debug/pprof/{profile}", get(profile_of_param))
        .layer(middleware::from_fn_with_state(token.map(Arc::new), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(guarded)
        .with_state(shared)
}

async fn auth(State(token): State<Option<Arc<String>>>, request: Request, next: Next) -> Response {
    if let Some(token) = token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Compared in constant time: the token is a secret.
        let ok = given.is_some_and(|g| {
            g.len() == token.len()
                && g.bytes()
                    .zip(token.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        });
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a bearer token is required (Authorization: Bearer …, from --listen-token-file)\n",
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// What `/` lists for anything but a browser (which gets the page).
pub(crate) const INDEX: &str = "gotrace agent\n\n\
     /                                        the live page (in a browser)\n\
     /targets                                 the Go processes watched (JSON)\n\
     /targets/ID/debug/pprof/heap             heap profile, as net/http/pprof serves it\n\
     /targets/ID/debug/pprof/allocs           the same, allocations by default\n\
     /targets/ID/debug/pprof/goroutine        goroutine profile (?debug=1, ?debug=2 as text)\n\
     /targets/ID/debug/pprof/delta_heap       allocations since the last request (?seconds=N)\n\
     /debug/pprof/PROFILE?target=ID           the same, the target as a parameter\n\
     /metrics                                 Prometheus metrics (OpenMetrics)\n\
     /sd                                      the targets in Prometheus HTTP service discovery form\n\
     /targets/ID/                             one target's live page (in a browser)\n\
     /healthz                                 liveness\n";

#[derive(Serialize)]
struct TargetView {
    id: String,
    pid: u32,
    labels: BTreeMap<&'static str, String>,
    since: String,
    findings: Vec<FindingView>,
}

#[derive(Serialize)]
struct FindingView {
    pattern: &'static str,
    site: String,
    hint: String,
    evidence: serde_json::Value,
}

fn view(w: &Watched) -> TargetView {
    TargetView {
        id: w.id(),
        pid: w.key.pid,
        labels: w.labels.pairs().into_iter().collect(),
        since: humantime::format_rfc3339_seconds(w.since).to_string(),
        findings: w
            .session
            .findings()
            .iter()
            .map(|f| FindingView {
                pattern: f.pattern,
                site: site_label(f),
                hint: f.hint.clone(),
                evidence: f.evidence.clone(),
            })
            .collect(),
    }
}

async fn targets(State(shared): State<Arc<Shared>>) -> Response {
    blocking(move || {
        let views: Vec<TargetView> = shared.targets().iter().map(|t| view(&lock(t))).collect();
        Ok(Json(views).into_response())
    })
    .await
}

/// Prometheus' HTTP service discovery (`http_sd_configs`, Alloy's `discovery.http`): one
/// group per target, its labels, `__profile_path_prefix__` for Alloy's `pyroscope.scrape` and
/// `__param_target` for scrapers that take the target as a query parameter (Parca).
async fn service_discovery(State(shared): State<Arc<Shared>>) -> Response {
    blocking(move || {
        let addr = shared.config.listen.to_string();
        let groups: Vec<serde_json::Value> = shared
            .targets()
            .iter()
            .map(|t| {
                let w = lock(t);
                let mut labels: BTreeMap<String, String> = w
                    .labels
                    .pairs()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                labels.insert(
                    "__profile_path_prefix__".into(),
                    format!("/targets/{}", w.id()),
                );
                labels.insert("gotrace_target".into(), w.id());
                serde_json::json!({ "targets": [addr], "labels": labels })
            })
            .collect();
        Ok(Json(groups).into_response())
    })
    .await
}

async fn metrics_text(State(shared): State<Arc<Shared>>) -> Response {
    blocking(move || {
        Ok((
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            metrics::render(&shared),
        )
            .into_response())
    })
    .await
}

async fn pprof_index(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    if shared.target(&id).is_none() {
        return not_found(&id);
    }
    format!(
        "/targets/{id}/debug/pprof/\n\nheap\nallocs\ngoroutine\ngoroutine?debug=1\ngoroutine?debug=2\ndelta_heap\n"
    )
    .into_response()
}

#[derive(Deserialize, Default)]
struct Params {
    #[serde(default)]
    debug: u8,
    seconds: Option<u64>,
    target: Option<String>,
}

async fn profile_of_param(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(q): Query<Params>,
) -> Response {
    match q.target.clone() {
        Some(id) => profile(State(shared), Path((id, name)), Query(q)).await,
        None => bad_request("name the target: ?target=ID (the ids are listed at /targets)"),
    }
}

async fn profile(
    State(shared): State<Arc<Shared>>,
    Path((id, name)): Path<(String, String)>,
    Query(q): Query<Params>,
) -> Response {
    let Some(target) = shared.target(&id) else {
        return not_found(&id);
    };
    match (name.as_str(), q.seconds) {
        ("delta_heap", Some(seconds)) => delta_over(target, seconds).await,
        ("heap" | "allocs", Some(_)) => bad_request(
            "?seconds= is served by /delta_heap (allocations over the window; in-use stays absolute)",
        ),
        ("heap" | "allocs" | "goroutine" | "delta_heap", None) => {
            blocking(move || {
                let mut w = lock(&target);
                serve(&mut w, &name, q.debug)
            })
            .await
        }
        _ => (
            StatusCode::NOT_FOUND,
            format!("unknown profile {name:?}: heap, allocs, goroutine and delta_heap are served\n"),
        )
            .into_response(),
    }
}

fn serve(w: &mut Watched, name: &str, debug: u8) -> Result<Response> {
    let session = &w.session;
    let profile = match (name, debug) {
        ("goroutine", 2) => return Ok(text(session.dump()?.render_goroutines())),
        ("goroutine", 1) => {
            let p = session.snapshot(None)?.goroutines;
            let Some(p) = p else {
                return Ok(unavailable("goroutine"));
            };
            let binary = &session.target().binary;
            let bias = session.target().load_bias;
            let entry = |pc: u64| {
                binary
                    .pclntab()
                    .func_for_pc(pc.wrapping_sub(bias))
                    .map(|f| f.entry.wrapping_add(bias))
            };
            return Ok(text(legacy_text(&p, entry)));
        }
        (_, 1..) => {
            return Ok(bad_request(
                "?debug= text is served for the goroutine profile only; use the pprof file",
            ))
        }
        ("goroutine", _) => session.snapshot(None)?.goroutines,
        ("heap", _) => session.heap_snapshot()?.heap,
        ("allocs", _) => session
            .heap_snapshot()?
            .heap
            .map(|p| with_default_type(p, "alloc_space")),
        _ => session.delta_heap_profile(&mut w.delta_http)?,
    };
    match profile {
        Some(p) => Ok(pprof_file(name, &p)?),
        None => Ok(unavailable(name)),
    }
}

/// `delta_heap?seconds=N`: a fresh look now and another N seconds later; the allocations in
/// between, with the in-use values of the second.
async fn delta_over(target: Arc<std::sync::Mutex<Watched>>, seconds: u64) -> Response {
    if seconds == 0 || seconds > MAX_SECONDS {
        return bad_request(&format!("?seconds= must be within 1..={MAX_SECONDS}"));
    }
    let t = target.clone();
    let first = move || -> Result<AllocBaseline> {
        let mut w = lock(&t);
        w.session.step()?;
        let mut base = AllocBaseline::default();
        w.session.delta_heap_profile(&mut base)?;
        Ok(base)
    };
    let mut base = match tokio::task::spawn_blocking(first).await {
        Ok(Ok(base)) => base,
        Ok(Err(e)) => return failed(&e),
        Err(_) => return failed(&Error::Other("the request's worker failed".into())),
    };
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    blocking(move || {
        let mut w = lock(&target);
        w.session.step()?;
        match w.session.delta_heap_profile(&mut base)? {
            Some(p) => pprof_file("delta_heap", &p),
            None => Ok(unavailable("delta_heap")),
        }
    })
    .await
}

fn with_default_type(mut p: proto::Profile, sample_type: &str) -> proto::Profile {
    if let Some(i) = p.string_table.iter().position(|s| s == sample_type) {
        p.default_sample_type = i as i64;
    }
    p
}

fn pprof_file(name: &str, p: &proto::Profile) -> Result<Response> {
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        pprof::gzip(p)?,
    )
        .into_response())
}

/// Go's `debug=1` text of a count profile (runtime/pprof's printCountProfile): each stack
/// with its count and, per frame, address, function+offset and file:line.
fn legacy_text(p: &proto::Profile, entry: impl Fn(u64) -> Option<u64>) -> String {
    let s = |i: i64| p.string_table.get(i as usize).map_or("", String::as_str);
    let locations: BTreeMap<u64, &proto::Location> = p.location.iter().map(|l| (l.id, l)).collect();
    let functions: BTreeMap<u64, &proto::Function> = p.function.iter().map(|f| (f.id, f)).collect();
    let total: i64 = p
        .sample
        .iter()
        .map(|x| x.value.first().copied().unwrap_or(0))
        .sum();
    let mut out = format!("goroutine profile: total {total}\n");
    for sample in &p.sample {
        let locs: Vec<&proto::Location> = sample
            .location_id
            .iter()
            .filter_map(|id| locations.get(id).copied())
            .collect();
        let _ = write!(out, "{} @", sample.value.first().copied().unwrap_or(0));
        for l in &locs {
            let _ = write!(out, " {:#x}", l.address);
        }
        out.push('\n');
        for l in &locs {
            for line in &l.line {
                let Some(f) = functions.get(&line.function_id) else {
                    continue;
                };
                let off = entry(l.address).map_or(String::new(), |e| {
                    format!("+{:#x}", l.address.wrapping_sub(e))
                });
                let _ = writeln!(
                    out,
                    "#\t{:#x}\t{}{off}\t{}:{}",
                    l.address,
                    s(f.name),
                    s(f.filename),
                    line.line
                );
            }
        }
        out.push('\n');
    }
    out
}

/// A finding's site as the agent's lists name it: `function (file:line)`.
pub(crate) fn site_label(f: &crate::detect::Finding) -> String {
    format!("{} ({}:{})", f.site.function, f.site.file, f.site.line)
}

pub(crate) async fn blocking(work: impl FnOnce() -> Result<Response> + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => failed(&e),
        Err(_) => failed(&Error::Other("the request's worker failed".into())),
    }
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

fn failed(e: &Error) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
}

fn bad_request(why: &str) -> Response {
    (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response()
}

pub(crate) fn not_found(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("no target {id:?} (the targets are listed at /targets)\n"),
    )
        .into_response()
}

fn unavailable(name: &str) -> Response {
    let why = if name == "goroutine" {
        "the goroutine list could not be read"
    } else {
        "no heap profile yet: Go publishes one after a GC cycle, with its sampler on (the agent \
         turns it on unless --read-only)"
    };
    (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
}
