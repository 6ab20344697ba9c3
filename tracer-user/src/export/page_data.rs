//! What the page (`export::page`) draws, as one JSON document: embedded in each output
//! directory's `index.html`, and served as `api/page` by `attach --web` and the agent, which
//! the page polls every tick.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    flamegraph::HeapValue,
    tree::{DiffNode, Node},
};
use crate::{
    dump::Group,
    error::Result,
    snapshot::{Report, Snapshot},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One session, updated every tick (`attach --web`, an agent's target).
    Live,
    /// A session's results, offline (`index.html`).
    Report,
    /// The agent's list of targets.
    Agent,
}

/// The flamegraphs the page switches between (`None`: not available, or not asked for).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Flames {
    /// Heap in use by stack, bytes.
    pub inuse_space: Option<Node>,
    /// Bytes allocated: over the latest GC interval while live, since the program started in a
    /// report.
    pub alloc_space: Option<Node>,
    /// Goroutines by stack.
    pub goroutines: Option<Node>,
}

/// A moment the heap in use can be compared with (`?diff=ID`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DiffBase {
    pub id: String,
    pub label: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Diff {
    pub base: String,
    pub label: String,
    pub inuse_space: DiffNode,
}

/// One of the agent's targets, as its list shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TargetEntry {
    pub id: String,
    /// Relative to the agent's `/`.
    pub url: String,
    pub labels: BTreeMap<String, String>,
    pub findings: Vec<FindingEntry>,
    pub heap_inuse_bytes: Option<u64>,
    pub goroutines: Option<i64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FindingEntry {
    pub pattern: &'static str,
    pub site: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct PageData<'a> {
    pub mode: Mode,
    /// How often the page asks again (live and agent modes).
    pub tick_s: f64,
    /// RFC 3339, UTC.
    pub generated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<TargetEntry>>,
    pub report: Option<&'a Report>,
    pub flames: Flames,
    pub groups: Option<&'a [Group]>,
    pub diff_bases: Vec<DiffBase>,
    pub diff: Option<Diff>,
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl<'a> PageData<'a> {
    /// The page of a session's results (`index.html`): every flamegraph of the snapshot, and
    /// the heap in use against the profile at attach.
    pub fn report(snapshot: &'a Snapshot) -> Result<PageData<'a>> {
        let (inuse, alloc) = match &snapshot.heap {
            Some(p) => (
                Node::of_heap(p, HeapValue::InuseBytes)?,
                Node::of_heap(p, HeapValue::AllocBytes)?,
            ),
            None => (None, None),
        };
        let goroutines = match &snapshot.goroutines {
            Some(p) => Node::of_profile(p, "goroutine")?,
            None => snapshot.groups.as_deref().and_then(Node::of_groups),
        };
        let base = match &snapshot.heap_at_attach {
            Some(p) => Node::of_heap(p, HeapValue::InuseBytes)?,
            None => None,
        };
        let diff = inuse.as_ref().zip(base.as_ref()).map(|(now, base)| Diff {
            base: "attach".into(),
            label: AT_ATTACH.into(),
            inuse_space: now.diff(Some(base)),
        });
        Ok(PageData {
            mode: Mode::Report,
            tick_s: 0.0,
            generated_at: now_rfc3339(),
            targets: None,
            report: Some(&snapshot.report),
            flames: Flames {
                inuse_space: inuse,
                alloc_space: alloc,
                goroutines,
            },
            groups: snapshot.groups.as_deref(),
            diff_bases: diff
                .iter()
                .map(|d| DiffBase {
                    id: d.base.clone(),
                    label: "at attach".into(),
                })
                .collect(),
            diff,
        })
    }

    /// The agent's list of targets.
    pub fn agent(targets: Vec<TargetEntry>, tick_s: f64) -> PageData<'static> {
        PageData {
            mode: Mode::Agent,
            tick_s,
            generated_at: now_rfc3339(),
            targets: Some(targets),
            report: None,
            flames: Flames::default(),
            groups: None,
            diff_bases: Vec::new(),
            diff: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("page data serialises")
    }
}

/// The label of the diff against the heap profile gotrace found at attach.
pub const AT_ATTACH: &str = "in use now vs at attach";
