//! Flamegraph trees as the page draws them: a node per frame, root first, each with the value
//! of every sample under it — made from a profile's folded stacks (so the page shows what
//! `heap.pb.gz` and the SVG flamegraphs show) or from a goroutine dump — and the differential
//! tree of two moments.

use std::collections::HashMap;

use serde::Serialize;

use super::flamegraph::{self, HeapValue};
use crate::{dump::Group, error::Result, pprof::proto};

/// A frame and everything called under it (d3-flame-graph's node shape).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Node {
    pub name: String,
    pub value: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Node>,
}

/// A node of the newer tree with its change since the base (`delta` < 0: it shrank).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiffNode {
    pub name: String,
    pub value: u64,
    pub delta: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<DiffNode>,
}

/// Frames narrower than this share of the root are left out of what the page is sent (their
/// value stays in their parent): nobody can see them, and a program with thousands of
/// allocation sites would otherwise send megabytes every second.
const MIN_SHARE: f64 = 1.0 / 4000.0;

impl Node {
    fn root() -> Node {
        Node {
            name: "total".into(),
            ..Node::default()
        }
    }

    /// Adds `value` along `path` (root first).
    fn add<'a>(&mut self, path: impl IntoIterator<Item = &'a str>, value: u64) {
        self.value += value;
        let mut node = self;
        for name in path {
            let i = match node.children.iter().position(|c| c.name == name) {
                Some(i) => i,
                None => {
                    node.children.push(Node {
                        name: name.to_string(),
                        ..Node::default()
                    });
                    node.children.len() - 1
                }
            };
            node = &mut node.children[i];
            node.value += value;
        }
    }

    /// Children widest first, tiny ones dropped.
    fn finish(mut self) -> Node {
        let min = (self.value as f64 * MIN_SHARE) as u64;
        self.prune(min);
        self
    }

    fn prune(&mut self, min: u64) {
        self.children.retain(|c| c.value > min);
        self.children
            .sort_by(|a, b| b.value.cmp(&a.value).then(a.name.cmp(&b.name)));
        for c in &mut self.children {
            c.prune(min);
        }
    }

    /// The tree of one of a heap profile's values (`None`: the profile has none to show).
    pub fn of_heap(profile: &proto::Profile, value: HeapValue) -> Result<Option<Node>> {
        Node::of_profile(profile, value.sample_type())
    }

    /// The tree of the sample type named `sample_type`, from the profile's folded stacks.
    pub fn of_profile(profile: &proto::Profile, sample_type: &str) -> Result<Option<Node>> {
        let folded = flamegraph::folded(profile, sample_type)?;
        let mut root = Node::root();
        for line in folded.lines() {
            let Some((stack, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value: u64 = value.parse().unwrap_or(0);
            root.add(stack.split(';'), value);
        }
        Ok((root.value > 0).then(|| root.finish()))
    }

    /// Goroutines by stack, from a dump's groups (each group's frames innermost first).
    pub fn of_groups(groups: &[Group]) -> Option<Node> {
        let mut root = Node::root();
        for g in groups {
            root.add(
                g.frames.iter().rev().map(|f| f.function.as_str()),
                g.count as u64,
            );
        }
        (root.value > 0).then(|| root.finish())
    }

    /// `self` (now) against `base`, frame by frame along the same paths.
    pub fn diff(&self, base: Option<&Node>) -> DiffNode {
        let children: HashMap<&str, &Node> = base
            .map(|b| b.children.iter().map(|c| (c.name.as_str(), c)).collect())
            .unwrap_or_default();
        DiffNode {
            name: self.name.clone(),
            value: self.value,
            delta: self.value as i64 - base.map_or(0, |b| b.value as i64),
            children: self
                .children
                .iter()
                .map(|c| c.diff(children.get(c.name.as_str()).copied()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(stacks: &[(&str, u64)]) -> Node {
        let mut root = Node::root();
        for (s, v) in stacks {
            root.add(s.split(';'), *v);
        }
        root.finish()
    }

    #[test]
    fn stacks_merge_by_frame_and_sort_widest_first() {
        let t = tree(&[("main;a;x", 10), ("main;b", 30), ("main;a;y", 5)]);
        assert_eq!(t.value, 45);
        let main = &t.children[0];
        assert_eq!((main.name.as_str(), main.value), ("main", 45));
        assert_eq!(main.children[0].name, "b");
        assert_eq!(main.children[1].value, 15);
        assert_eq!(main.children[1].children.len(), 2);
    }

    #[test]
    fn invisible_frames_are_left_out_but_counted_in_their_parent() {
        let t = tree(&[("main;big", 1_000_000), ("main;tiny", 10)]);
        assert_eq!(t.children[0].value, 1_000_010);
        assert_eq!(t.children[0].children.len(), 1);
    }

    #[test]
    fn a_diff_gives_each_frame_its_change() {
        let base = tree(&[("main;leak", 100), ("main;steady", 50), ("main;gone", 20)]);
        let now = tree(&[("main;leak", 400), ("main;steady", 50), ("main;new", 7)]);
        let d = now.diff(Some(&base));
        assert_eq!(d.delta, 457 - 170);
        let main = &d.children[0];
        let delta = |n: &str| main.children.iter().find(|c| c.name == n).unwrap().delta;
        assert_eq!(delta("leak"), 300);
        assert_eq!(delta("steady"), 0);
        assert_eq!(delta("new"), 7);
    }
}
