//! Two heap profiles of one program compared (`gotrace diff`): per function, how much its
//! allocations in use (or allocated) grew from BASE to NEW, the totals of both, and which two
//! snapshots of the agent's history to compare. The differential flamegraph is drawn by
//! [`svg`] from the same profiles.
//!
//! The accounting is pprof's, so that `go tool pprof -top -diff_base BASE NEW` agrees: a
//! sample's value is its function's "flat" (the innermost frame, an inlined call being a frame
//! of its own), each function on its stack gets it once as "cum", values are taken as stored
//! (Go's heap profiles and gotrace's are both scaled already), and the sample type is found by
//! name.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    time::{Duration, SystemTime},
};

use serde::Serialize;

use crate::export::flamegraph::{self, Frame, HeapValue, Stacks};
use crate::{
    agent::history::{HistoryReader, StoredSnapshot, StoredTarget},
    error::{Error, Result},
    pprof::{self, proto},
    snapshot::HEAP_PPROF,
    units::human_bytes,
};

/// A heap profile, and what to call it in the table.
pub struct Input {
    /// The file, or the history snapshot, it came from.
    pub label: String,
    pub profile: proto::Profile,
}

/// What a heap profile must have; the other sample types are checked when asked for.
const HEAP_SAMPLE_TYPE: &str = "inuse_space";

const WHAT_TO_GIVE: &str = "give a heap profile: gotrace's heap.pb.gz, an output directory of \
                            gotrace, or what Go's /debug/pprof/heap serves";

impl Input {
    /// Reads a heap profile from `path`: a pprof file, gzipped or not, or a gotrace output
    /// directory (its heap.pb.gz).
    pub fn read(path: &Path) -> Result<Input> {
        let shown = path.display();
        let file = match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                let file = path.join(HEAP_PPROF);
                if !file.is_file() {
                    return Err(Error::Other(format!(
                        "{shown} is a directory without {HEAP_PPROF}: {WHAT_TO_GIVE}"
                    )));
                }
                file
            }
            Ok(_) => path.to_path_buf(),
            Err(e) => return Err(Error::Other(format!("cannot read {shown}: {e}"))),
        };
        let bytes = std::fs::read(&file)
            .map_err(|e| Error::Other(format!("cannot read {}: {e}", file.display())))?;
        if bytes.is_empty() {
            return Err(Error::Other(format!(
                "{} is empty, not a profile: {WHAT_TO_GIVE}",
                file.display()
            )));
        }
        let profile = pprof::decode(&bytes).map_err(|e| {
            let why = match e {
                Error::Export(why) => why,
                e => e.to_string(),
            };
            Error::Other(format!(
                "{}: {why} ({WHAT_TO_GIVE}, in the proto format: no ?debug=1)",
                file.display()
            ))
        })?;
        Input::new(file.display().to_string(), profile)
    }

    /// A profile from elsewhere (the agent's history), checked as [`Input::read`] checks one.
    pub fn new(label: String, profile: proto::Profile) -> Result<Input> {
        let types: Vec<&str> = profile
            .sample_type
            .iter()
            .filter_map(|t| profile.string_table.get(usize::try_from(t.r#type).ok()?))
            .map(String::as_str)
            .collect();
        if !types.contains(&HEAP_SAMPLE_TYPE) {
            return Err(Error::Other(format!(
                "{label} is not a heap profile: it has no {HEAP_SAMPLE_TYPE} (its sample types: {}); {WHAT_TO_GIVE}",
                if types.is_empty() { "none".to_string() } else { types.join(", ") }
            )));
        }
        Ok(Input { label, profile })
    }

    /// `gotrace diff --target ID --since DUR`: from the agent's history, the last snapshot of
    /// the target taken at least `since` before `now` (BASE) and its newest (NEW).
    pub fn from_history(
        reader: &HistoryReader,
        id: &str,
        since: Duration,
        now: SystemTime,
    ) -> Result<(Input, Input)> {
        let target = reader.target(id)?;
        let (base, new) = pick_since(&target, since, now)?;
        let input = |s: &StoredSnapshot| -> Result<Input> {
            let label = format!("{id} {}", s.name);
            let (_, snapshot) = reader.load(id, Some(&s.name))?;
            let profile = snapshot
                .heap
                .ok_or_else(|| Error::Other(format!("snapshot {label} has no heap profile")))?;
            Input::new(label, profile)
        };
        Ok((input(base)?, input(new)?))
    }

    /// When the profile was taken, if it says.
    fn time(&self) -> Option<String> {
        let nanos = u64::try_from(self.profile.time_nanos)
            .ok()
            .filter(|&n| n > 0)?;
        let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos);
        Some(humantime::format_rfc3339_seconds(t).to_string())
    }
}

/// One side of the comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Moment {
    pub label: String,
    /// RFC 3339, when the profile records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The sum of every sample's value.
    pub total: i64,
}

/// One function whose own value changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FunctionDelta {
    pub function: String,
    /// The file and line, in this function, whose value changed most: the allocation that
    /// grew. Absent for a frame the profile has no lines for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<i64>,
    /// The function's own value (pprof's "flat") in BASE, in NEW, and NEW minus BASE.
    pub base: i64,
    pub new: i64,
    pub delta: i64,
    /// The change of everything under the function (pprof's "cum").
    pub cum_delta: i64,
}

/// NEW against BASE.
#[derive(Clone, Debug, Serialize)]
pub struct Diff {
    /// pprof's name of the value compared (`inuse_space`...).
    pub sample_type: &'static str,
    /// What it counts: bytes or objects.
    pub unit: &'static str,
    pub base: Moment,
    pub new: Moment,
    /// `new.total - base.total`.
    pub delta: i64,
    /// Every function whose own value changed, the one that grew most first (those that
    /// shrank most come last).
    pub functions: Vec<FunctionDelta>,
}

/// One function's values in one profile.
#[derive(Default)]
struct Account {
    flat: i64,
    cum: i64,
    /// The flat value by (file, line).
    lines: HashMap<(String, i64), i64>,
}

/// One profile, accounted per function.
struct Accounts {
    total: i64,
    functions: HashMap<String, Account>,
}

impl Accounts {
    fn of(profile: &proto::Profile, value: HeapValue) -> Result<Accounts> {
        let stacks = Stacks::new(profile, value.sample_type())?;
        let mut accounts = Accounts {
            total: 0,
            functions: HashMap::new(),
        };
        let mut frames = Vec::new();
        let mut seen = HashSet::new();
        for (sample, v) in stacks.samples() {
            accounts.total = accounts.total.saturating_add(v);
            if v == 0 {
                continue;
            }
            stacks.frames(sample, &mut frames)?;
            let Some(leaf) = frames.first() else {
                continue;
            };
            let own = accounts.functions.entry(leaf.name()).or_default();
            own.flat = own.flat.saturating_add(v);
            if let Frame::Function { file, line, .. } = leaf {
                let at = own.lines.entry((file.to_string(), *line)).or_default();
                *at = at.saturating_add(v);
            }
            // A recursive function is counted once per sample, as pprof does.
            seen.clear();
            for f in &frames {
                let name = f.name();
                if seen.insert(name.clone()) {
                    let a = accounts.functions.entry(name).or_default();
                    a.cum = a.cum.saturating_add(v);
                }
            }
        }
        Ok(accounts)
    }
}

impl Diff {
    /// Compares `value` of the two profiles.
    pub fn new(base: &Input, new: &Input, value: HeapValue) -> Result<Diff> {
        let named = |input: &Input, e: Error| match e {
            Error::Export(why) => Error::Other(format!("{}: {why}", input.label)),
            e => e,
        };
        let b = Accounts::of(&base.profile, value).map_err(|e| named(base, e))?;
        let n = Accounts::of(&new.profile, value).map_err(|e| named(new, e))?;
        let empty = Account::default();
        let names: HashSet<&String> = b.functions.keys().chain(n.functions.keys()).collect();
        let mut functions: Vec<FunctionDelta> = names
            .into_iter()
            .filter_map(|name| {
                let (was, is) = (
                    b.functions.get(name).unwrap_or(&empty),
                    n.functions.get(name).unwrap_or(&empty),
                );
                let delta = is.flat.saturating_sub(was.flat);
                if delta == 0 {
                    return None;
                }
                let site = changed_most(&was.lines, &is.lines);
                Some(FunctionDelta {
                    function: name.clone(),
                    file: site.map(|(file, _)| file.clone()).filter(|f| !f.is_empty()),
                    line: site.map(|(_, line)| *line).filter(|&l| l > 0),
                    base: was.flat,
                    new: is.flat,
                    delta,
                    cum_delta: is.cum.saturating_sub(was.cum),
                })
            })
            .collect();
        functions.sort_by(|x, y| y.delta.cmp(&x.delta).then(x.function.cmp(&y.function)));
        Ok(Diff {
            sample_type: value.sample_type(),
            unit: value.count_name(),
            base: Moment {
                label: base.label.clone(),
                time: base.time(),
                total: b.total,
            },
            new: Moment {
                label: new.label.clone(),
                time: new.time(),
                total: n.total,
            },
            delta: n.total.saturating_sub(b.total),
            functions,
        })
    }
}

/// The line whose value changed most (by size, growth before shrinking on a tie).
fn changed_most<'a>(
    was: &'a HashMap<(String, i64), i64>,
    is: &'a HashMap<(String, i64), i64>,
) -> Option<&'a (String, i64)> {
    let change = |k: &(String, i64)| {
        let d = is.get(k).copied().unwrap_or(0) - was.get(k).copied().unwrap_or(0);
        (d.unsigned_abs(), d > 0, std::cmp::Reverse(k.clone()))
    };
    was.keys().chain(is.keys()).max_by_key(|k| change(k))
}

impl Diff {
    /// The table: the totals, then the `top` functions that grew most (all with 0).
    pub fn render(&self, top: usize) -> String {
        let amount = |v: i64| self.amount(v);
        let signed = |v: i64| match v {
            0 => "0".to_string(),
            v if v > 0 => format!("+{}", amount(v)),
            v => format!("-{}", amount(v)),
        };
        let exact = |v: i64| {
            if self.unit == "bytes" {
                format!(" ({v} bytes)")
            } else {
                String::new()
            }
        };
        let moment = |m: &Moment| match &m.time {
            Some(t) => format!("{} ({t})", m.label),
            None => m.label.clone(),
        };
        let mut out = format!(
            "{} ({}), NEW minus BASE:\n  base  {:>11}{}  {}\n  new   {:>11}{}  {}\n  delta {:>11}{}{}\n",
            self.sample_type,
            self.unit,
            amount(self.base.total),
            exact(self.base.total),
            moment(&self.base),
            amount(self.new.total),
            exact(self.new.total),
            moment(&self.new),
            signed(self.delta),
            exact(self.delta),
            if self.base.total > 0 {
                format!(", {:+.1}% of base", 100.0 * self.delta as f64 / self.base.total as f64)
            } else {
                String::new()
            },
        );
        if self.functions.is_empty() {
            out.push_str("no function's value changed\n");
            return out;
        }
        let shown = if top == 0 {
            self.functions.len()
        } else {
            top.min(self.functions.len())
        };
        out.push_str(&format!(
            "{:>12} {:>11} {:>11} {:>12}  FUNCTION\n",
            "DELTA", "BASE", "NEW", "CUM DELTA"
        ));
        for f in &self.functions[..shown] {
            let site = match (&f.file, f.line) {
                (Some(file), Some(line)) => format!("  {}:{line}", short_path(file)),
                (Some(file), None) => format!("  {}", short_path(file)),
                _ => String::new(),
            };
            out.push_str(&format!(
                "{:>12} {:>11} {:>11} {:>12}  {}{site}\n",
                signed(f.delta),
                amount(f.base),
                amount(f.new),
                signed(f.cum_delta),
                f.function
            ));
        }
        if shown < self.functions.len() {
            out.push_str(&format!(
                "... {} more functions changed (--top 0 shows them all)\n",
                self.functions.len() - shown
            ));
        }
        out
    }

    /// `v`'s size, in the unit's human form.
    fn amount(&self, v: i64) -> String {
        if self.unit == "bytes" {
            human_bytes(v.unsigned_abs())
        } else {
            v.unsigned_abs().to_string()
        }
    }

    /// The same diff with only its `top` functions (all with 0).
    pub fn top(mut self, top: usize) -> Diff {
        if top > 0 {
            self.functions.truncate(top);
        }
        self
    }
}

/// The differential flamegraph of NEW against BASE (see [`flamegraph::heap_diff_svg`]).
pub fn svg(base: &Input, new: &Input, value: HeapValue) -> Result<Vec<u8>> {
    let subtitle = format!(
        "{} against {}: red grew, blue shrank",
        new.label, base.label
    );
    flamegraph::heap_diff_svg(&base.profile, &new.profile, value, Some(&subtitle))
}

/// The last two components of a source path: enough to find the file, short enough for a
/// table (`heapgrow/main.go`).
fn short_path(file: &str) -> &str {
    let mut slashes = file.rmatch_indices('/');
    match (slashes.next(), slashes.next()) {
        (Some(_), Some((i, _))) => &file[i + 1..],
        _ => file,
    }
}

/// Of a target's stored snapshots, the two `gotrace diff --target ID --since DUR` compares:
/// the last one taken at or before `since` before `now`, and the newest.
pub(crate) fn pick_since(
    target: &StoredTarget,
    since: Duration,
    now: SystemTime,
) -> Result<(&StoredSnapshot, &StoredSnapshot)> {
    let id = &target.id;
    let (Some(oldest), Some(newest)) = (target.snapshots.first(), target.snapshots.last()) else {
        return Err(Error::Other(format!("target {id} has no snapshot")));
    };
    let ago = |t: SystemTime| {
        let secs = now.duration_since(t).unwrap_or_default().as_secs();
        humantime::format_duration(Duration::from_secs(secs))
    };
    let at = now.checked_sub(since).unwrap_or(SystemTime::UNIX_EPOCH);
    let base = target
        .snapshots
        .iter()
        .rev()
        .find(|s| s.time <= at)
        .ok_or_else(|| {
            Error::Other(format!(
                "target {id} has no snapshot {} old: its oldest, {}, was taken {} ago (give a shorter --since; `gotrace history list {id}` lists them)",
                humantime::format_duration(since),
                oldest.name,
                ago(oldest.time)
            ))
        })?;
    if base.name == newest.name {
        return Err(Error::Other(format!(
            "target {id} has nothing newer than {} (taken {} ago) to compare it with: its newest snapshot is older than --since",
            base.name,
            ago(base.time)
        )));
    }
    Ok((base, newest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::history::Kind;

    /// A heap profile of `(stack innermost first, inuse_space)` samples; a function
    /// `main.fN` is at line N of main.go, and each frame of a stack is a location of its own
    /// except a pair `"a+b"`, one location with `b` inlined into `a`.
    fn profile(samples: &[(&[&str], i64)]) -> proto::Profile {
        let mut p = proto::Profile {
            string_table: vec![
                String::new(),
                "alloc_space".into(),
                "inuse_space".into(),
                "bytes".into(),
                "/src/app/main.go".into(),
            ],
            sample_type: vec![
                proto::ValueType { r#type: 1, unit: 3 },
                proto::ValueType { r#type: 2, unit: 3 },
            ],
            ..Default::default()
        };
        let function_id = |p: &mut proto::Profile, name: &str| -> u64 {
            if let Some(f) = p
                .function
                .iter()
                .find(|f| p.string_table[f.name as usize] == name)
            {
                return f.id;
            }
            p.string_table.push(name.into());
            let id = p.function.len() as u64 + 1;
            p.function.push(proto::Function {
                id,
                name: p.string_table.len() as i64 - 1,
                filename: 4,
                ..Default::default()
            });
            id
        };
        for (stack, v) in samples {
            let mut ids = Vec::new();
            for frame in *stack {
                let mut lines = Vec::new();
                // Innermost first within a location, as in pprof.
                for name in frame.split('+').rev() {
                    let line = name.trim_start_matches("main.f").parse().unwrap_or(0);
                    lines.push(proto::Line {
                        function_id: function_id(&mut p, name),
                        line,
                        column: 0,
                    });
                }
                let id = p.location.len() as u64 + 1;
                p.location.push(proto::Location {
                    id,
                    address: 0x1000 * id,
                    line: lines,
                    ..Default::default()
                });
                ids.push(id);
            }
            p.sample.push(proto::Sample {
                location_id: ids,
                value: vec![v * 3, *v],
                ..Default::default()
            });
        }
        p
    }

    fn input(samples: &[(&[&str], i64)]) -> Input {
        Input::new("t".into(), profile(samples)).unwrap()
    }

    #[test]
    fn flat_goes_to_the_innermost_frame_and_cum_once_per_stack() {
        let base = input(&[
            (&["main.f10", "main.f1"], 100),
            (&["main.f20", "main.f1"], 50),
        ]);
        let new = input(&[
            (&["main.f10", "main.f1"], 400),
            (&["main.f10", "main.f10", "main.f1"], 40),
            (&["main.f20", "main.f1"], 20),
            (&["main.f1+main.f30", "main.f1"], 7),
        ]);
        let d = Diff::new(&base, &new, HeapValue::InuseBytes).unwrap();
        assert_eq!((d.base.total, d.new.total, d.delta), (150, 467, 317));
        let rows: Vec<(&str, i64, i64, i64, i64)> = d
            .functions
            .iter()
            .map(|f| (f.function.as_str(), f.base, f.new, f.delta, f.cum_delta))
            .collect();
        assert_eq!(
            rows,
            [
                ("main.f10", 100, 440, 340, 340),
                ("main.f30", 0, 7, 7, 7),
                ("main.f20", 50, 20, -30, -30),
            ]
        );
        assert_eq!(d.functions[0].file.as_deref(), Some("/src/app/main.go"));
        assert_eq!(d.functions[0].line, Some(10));
        // The other value of the same profiles, found by its name.
        let alloc = Diff::new(&base, &new, HeapValue::AllocBytes).unwrap();
        assert_eq!(alloc.delta, 3 * 317);
        assert!(Diff::new(&base, &new, HeapValue::InuseObjects).is_err());
    }

    #[test]
    fn the_table_states_the_totals_and_the_top_rows() {
        let base = input(&[(&["main.f10"], 1 << 20), (&["main.f20"], 1 << 20)]);
        let new = input(&[
            (&["main.f10"], 5 << 20),
            (&["main.f20"], 1 << 19),
            (&["main.f30"], 1),
        ]);
        let text = Diff::new(&base, &new, HeapValue::InuseBytes)
            .unwrap()
            .render(2);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("inuse_space (bytes)"), "{text}");
        assert!(lines[1].contains("2.0 MiB (2097152 bytes)"), "{text}");
        assert!(lines[2].contains("5.5 MiB"), "{text}");
        assert!(
            lines[3].contains("+3.5 MiB") && lines[3].contains("+175.0% of base"),
            "{text}"
        );
        assert!(
            lines[5].contains("+4.0 MiB") && lines[5].contains("main.f10  app/main.go:10"),
            "{text}"
        );
        assert!(lines[6].contains("main.f30"), "{text}");
        assert_eq!(
            lines[7],
            "... 1 more functions changed (--top 0 shows them all)"
        );
    }

    #[test]
    fn what_is_not_a_heap_profile_is_refused() {
        let mut p = profile(&[]);
        p.string_table[2] = "samples".into();
        let e = Input::new("cpu.pb.gz".into(), p).err().unwrap().to_string();
        assert!(e.starts_with("cpu.pb.gz is not a heap profile: it has no inuse_space (its sample types: alloc_space, samples)"), "{e}");
    }

    #[test]
    fn since_picks_the_last_snapshot_that_old_and_the_newest() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |mins: u64| StoredSnapshot {
            name: format!("{mins}m ago"),
            time: now - Duration::from_secs(mins * 60),
            kind: Kind::Interval,
            bytes: 1,
        };
        let target = StoredTarget {
            id: "1-2".into(),
            labels: Default::default(),
            snapshots: vec![at(120), at(65), at(55), at(1)],
        };
        let hour = Duration::from_secs(3600);
        let (base, new) = pick_since(&target, hour, now).unwrap();
        assert_eq!(
            (base.name.as_str(), new.name.as_str()),
            ("65m ago", "1m ago")
        );
        let e = pick_since(&target, 3 * hour, now)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("no snapshot 3h old: its oldest, 120m ago, was taken 2h ago"),
            "{e}"
        );
        let e = pick_since(&target, Duration::from_secs(30), now)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("nothing newer"), "{e}");
    }

    #[test]
    fn short_paths_keep_two_components() {
        assert_eq!(short_path("/a/b/c/main.go"), "c/main.go");
        assert_eq!(short_path("c/main.go"), "c/main.go");
        assert_eq!(short_path("main.go"), "main.go");
    }
}
