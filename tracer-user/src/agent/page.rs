//! The agent's live page: its list of targets at `/` (for a browser; `curl` still gets the
//! text index), and each target's page at `/targets/ID/`, whose diff view reaches back into
//! the history on disk.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use axum::{
    extract::{Path, Query, State},
    http::{header, HeaderMap},
    response::{Html, IntoResponse, Response},
};

use super::{history::HistoryReader, lock, server, Shared, Watched};
use crate::{
    export::{
        flamegraph::HeapValue,
        page_data::{DiffBase, FindingEntry, PageData, TargetEntry},
        tree::Node,
    },
    web::{ExtraBases, PageQuery},
};

/// How often the agent's pages ask again: its looks at a target come every `--look-interval`
/// (10 s by default), so asking every second would only show the same data.
const TICK: Duration = Duration::from_secs(5);

/// The moments of the history the diff view offers, when the history reaches back that far.
const AGES: &[(u64, &str)] = &[
    (300, "5 min ago (history)"),
    (3600, "1 h ago (history)"),
    (6 * 3600, "6 h ago (history)"),
    (86400, "1 day ago (history)"),
];

/// `/`: the page for a browser, the list of endpoints for anyone else.
pub(crate) async fn index(headers: HeaderMap) -> Response {
    let html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if html {
        Html(crate::export::page::PAGE).into_response()
    } else {
        server::INDEX.into_response()
    }
}

/// `/targets/ID/`: one target's live page.
pub(crate) async fn target_page(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    if shared.target(&id).is_none() {
        return server::not_found(&id);
    }
    Html(crate::export::page::PAGE).into_response()
}

/// `/api/page`: the targets.
pub(crate) async fn targets(State(shared): State<Arc<Shared>>) -> Response {
    server::blocking(move || {
        let entries: Vec<TargetEntry> = shared.targets().iter().map(|t| entry(&lock(t))).collect();
        Ok(json(PageData::agent(entries, TICK.as_secs_f64()).to_json()))
    })
    .await
}

/// `/targets/ID/api/page`: one target's page data, read now.
pub(crate) async fn target(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Response {
    let Some(target) = shared.target(&id) else {
        return server::not_found(&id);
    };
    server::blocking(move || {
        let history = History {
            reader: (!shared.config.history.no_history)
                .then(|| HistoryReader::open(&shared.config.history.state_dir).ok())
                .flatten(),
            id,
        };
        let mut w = lock(&target);
        let w = &mut *w;
        w.view.asked(&query);
        w.view.refresh(&w.session)?;
        Ok(json(w.view.page(&query, TICK, &history)))
    })
    .await
}

fn entry(w: &Watched) -> TargetEntry {
    let id = w.id();
    TargetEntry {
        url: format!("targets/{id}/"),
        id,
        labels: w
            .labels
            .pairs()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        findings: w
            .session
            .findings()
            .iter()
            .map(|f| FindingEntry {
                pattern: f.pattern,
                site: server::site_label(f),
            })
            .collect(),
        heap_inuse_bytes: w.session.model().gc.latest.map(|g| g.heap_in_use),
        goroutines: w.session.live_goroutines(),
    }
}

fn json(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// The target's snapshots on disk, as diff bases.
struct History {
    reader: Option<HistoryReader>,
    id: String,
}

impl History {
    /// Snapshot times, oldest first.
    fn times(&self) -> Vec<(String, SystemTime)> {
        let Some(reader) = &self.reader else {
            return Vec::new();
        };
        reader
            .target(&self.id)
            .map(|t| t.snapshots.into_iter().map(|s| (s.name, s.time)).collect())
            .unwrap_or_default()
    }
}

fn age(t: SystemTime) -> u64 {
    SystemTime::now()
        .duration_since(t)
        .unwrap_or_default()
        .as_secs()
}

impl ExtraBases for History {
    fn list(&self) -> Vec<DiffBase> {
        let oldest = self.times().first().map_or(0, |(_, t)| age(*t));
        AGES.iter()
            .filter(|(secs, _)| oldest >= *secs)
            .map(|(secs, label)| DiffBase {
                id: format!("h{secs}"),
                label: (*label).into(),
            })
            .collect()
    }

    fn get(&self, id: &str) -> Option<(String, Node)> {
        let secs: u64 = id.strip_prefix('h')?.parse().ok()?;
        // The newest snapshot at least that old.
        let (name, time) = self
            .times()
            .into_iter()
            .rev()
            .find(|(_, t)| age(*t) >= secs)?;
        let (_, snapshot) = self.reader.as_ref()?.load(&self.id, Some(&name)).ok()?;
        let tree = Node::of_heap(snapshot.heap.as_ref()?, HeapValue::InuseBytes).ok()??;
        let ago = humantime::format_duration(Duration::from_secs(age(time)));
        Some((format!("in use now vs {ago} ago ({name}, history)"), tree))
    }
}
