//! Flamegraphs: folded stacks (the `stackcollapse` text format, one line per distinct stack,
//! root first, `;`-separated, then the value) and SVGs drawn from them with inferno.
//!
//! Both are made from a built [`proto::Profile`], so a flamegraph shows exactly what pprof
//! shows for the same file: the same symbolization, inlined calls as frames of their own and
//! the same hidden runtime frames.

use std::{
    collections::{BTreeMap, HashMap},
    io::{self, Write},
};

use crate::error::{Error, Result};
use crate::pprof::proto;

/// The value of a heap profile a flamegraph shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapValue {
    /// Bytes still in use: what a leak looks like.
    InuseBytes,
    /// Bytes allocated since the program started: where the allocation churn is.
    AllocBytes,
    InuseObjects,
    AllocObjects,
}

impl HeapValue {
    pub const ALL: [HeapValue; 4] = [
        HeapValue::InuseBytes,
        HeapValue::InuseObjects,
        HeapValue::AllocBytes,
        HeapValue::AllocObjects,
    ];

    /// The value named as pprof names it (`inuse_space`...), for `--sample-index`.
    pub fn from_sample_type(name: &str) -> Option<HeapValue> {
        Self::ALL.into_iter().find(|v| v.sample_type() == name)
    }

    /// The sample type of Go's heap profile holding this value.
    pub fn sample_type(self) -> &'static str {
        match self {
            HeapValue::InuseBytes => "inuse_space",
            HeapValue::AllocBytes => "alloc_space",
            HeapValue::InuseObjects => "inuse_objects",
            HeapValue::AllocObjects => "alloc_objects",
        }
    }

    /// What one unit of width counts.
    pub fn count_name(self) -> &'static str {
        match self {
            HeapValue::InuseBytes | HeapValue::AllocBytes => "bytes",
            HeapValue::InuseObjects | HeapValue::AllocObjects => "objects",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            HeapValue::InuseBytes => "Heap in use (bytes)",
            HeapValue::AllocBytes => "Heap allocated (bytes)",
            HeapValue::InuseObjects => "Heap in use (objects)",
            HeapValue::AllocObjects => "Heap allocated (objects)",
        }
    }
}

/// The frame name of a sample with no frames at all, so that its value still counts.
pub const NO_STACK: &str = "[unknown]";

/// One frame of a sample's stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Frame<'p> {
    /// A function (an inlined call is a frame of its own), with the line of the call or, in
    /// the innermost frame, of the allocation. `file` is empty when the profile has none.
    Function {
        name: &'p str,
        file: &'p str,
        line: i64,
    },
    /// An address the profile has no frames for.
    Address(u64),
}

impl Frame<'_> {
    /// The frame's name as pprof shows it: the function, or the address.
    pub(crate) fn name(&self) -> String {
        match self {
            Frame::Function { name, .. } => frame_name(name),
            Frame::Address(a) => format!("{a:#x}"),
        }
    }
}

/// The samples of one sample type of a profile, with their stacks resolved.
pub(crate) struct Stacks<'p> {
    profile: &'p proto::Profile,
    index: usize,
    locations: HashMap<u64, &'p proto::Location>,
    functions: HashMap<u64, &'p proto::Function>,
}

impl<'p> Stacks<'p> {
    /// The sample type is found by name, never by position: profiles written by different
    /// programs order their sample types differently.
    pub(crate) fn new(profile: &'p proto::Profile, sample_type: &str) -> Result<Self> {
        let mut index = None;
        for (i, t) in profile.sample_type.iter().enumerate() {
            if string(profile, t.r#type)? == sample_type {
                index = Some(i);
            }
        }
        let index = index.ok_or_else(|| {
            Error::Export(format!("the profile has no sample type {sample_type:?}"))
        })?;
        Ok(Stacks {
            profile,
            index,
            locations: profile.location.iter().map(|l| (l.id, l)).collect(),
            functions: profile.function.iter().map(|f| (f.id, f)).collect(),
        })
    }

    /// Every sample with its value.
    pub(crate) fn samples(&self) -> impl Iterator<Item = (&'p proto::Sample, i64)> + '_ {
        self.profile
            .sample
            .iter()
            .map(|s| (s, s.value.get(self.index).copied().unwrap_or(0)))
    }

    /// The frames of `sample`, innermost first, into `out` (cleared first).
    pub(crate) fn frames(&self, sample: &proto::Sample, out: &mut Vec<Frame<'p>>) -> Result<()> {
        out.clear();
        for id in &sample.location_id {
            let loc = self.locations.get(id).ok_or_else(|| {
                Error::Export(format!(
                    "a sample names location {id}, which does not exist"
                ))
            })?;
            if loc.line.is_empty() {
                out.push(Frame::Address(loc.address));
            }
            for line in &loc.line {
                let f = self.functions.get(&line.function_id).ok_or_else(|| {
                    Error::Export(format!(
                        "location {id} names function {}, which does not exist",
                        line.function_id
                    ))
                })?;
                out.push(Frame::Function {
                    name: string(self.profile, f.name)?,
                    file: string(self.profile, f.filename)?,
                    line: line.line,
                });
            }
        }
        Ok(())
    }
}

fn string(profile: &proto::Profile, i: i64) -> Result<&str> {
    usize::try_from(i)
        .ok()
        .and_then(|i| profile.string_table.get(i))
        .map(String::as_str)
        .ok_or_else(|| Error::Export(format!("string index {i} out of range")))
}

/// The folded stacks of `profile` for the sample type named `sample_type`: one line per
/// distinct stack (sorted), root first, inlined calls expanded (the function they were
/// inlined into comes first), then the summed value. Samples whose value is zero or
/// negative are left out, as a flamegraph cannot draw them. An address pprof has no frames
/// for is shown as its runtime address.
pub fn folded(profile: &proto::Profile, sample_type: &str) -> Result<String> {
    let stacks = Stacks::new(profile, sample_type)?;
    let mut folded: BTreeMap<String, i64> = BTreeMap::new();
    let mut frames = Vec::new();
    for (sample, value) in stacks.samples() {
        if value <= 0 {
            continue;
        }
        stacks.frames(sample, &mut frames)?;
        let names: Vec<String> = frames.iter().rev().map(Frame::name).collect();
        let stack = if names.is_empty() {
            NO_STACK.to_string()
        } else {
            names.join(";")
        };
        let total = folded.entry(stack).or_insert(0);
        *total = total.saturating_add(value);
    }
    let mut out = String::new();
    for (stack, value) in folded {
        out.push_str(&stack);
        out.push(' ');
        out.push_str(&value.to_string());
        out.push('\n');
    }
    Ok(out)
}

/// `;` separates frames and a line ends a stack; Go's raw names of generic functions over
/// struct types contain `; ` (`go.shape.struct { A int; B int }`).
pub(crate) fn frame_name(name: &str) -> String {
    let name = if name.is_empty() { "[unknown]" } else { name };
    name.replace(';', ",").replace(['\n', '\r'], " ")
}

/// How an SVG is labelled.
#[derive(Clone, Copy, Debug)]
pub struct SvgOptions<'s> {
    pub title: &'s str,
    /// A second line under the title (the process, the time...).
    pub subtitle: Option<&'s str>,
    /// What the values count ("bytes", "objects"), shown in each frame's tooltip.
    pub count_name: &'s str,
}

/// Draws the folded stacks as an interactive SVG flamegraph (root at the bottom). With no
/// stacks at all (nothing sampled yet) the SVG says so instead of failing, so that a live
/// view always has a valid file to show.
pub fn svg(folded: &str, opts: &SvgOptions<'_>, out: impl Write) -> Result<()> {
    let svg_err = |e: io::Error| Error::Export(format!("drawing the flamegraph: {e}"));
    if folded.lines().all(|l| l.trim().is_empty()) {
        return empty_svg(opts, out).map_err(svg_err);
    }
    let mut options = inferno::flamegraph::Options::default();
    options.title = opts.title.to_string();
    options.subtitle = opts.subtitle.map(str::to_string);
    options.count_name = opts.count_name.to_string();
    options.colors =
        inferno::flamegraph::color::Palette::Basic(inferno::flamegraph::color::BasicPalette::Mem);
    // A function keeps its colour from one rendering to the next (live views redraw).
    options.hash = true;
    inferno::flamegraph::from_lines(&mut options, folded.lines(), out).map_err(svg_err)
}

fn empty_svg(opts: &SvgOptions<'_>, mut out: impl Write) -> io::Result<()> {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    write!(
        out,
        concat!(
            r#"<?xml version="1.0" standalone="no"?>"#,
            "\n",
            r#"<svg version="1.1" width="1200" height="80" xmlns="http://www.w3.org/2000/svg">"#,
            r#"<text x="600" y="24" text-anchor="middle" font-family="Verdana" font-size="17">{}</text>"#,
            r#"<text x="600" y="56" text-anchor="middle" font-family="Verdana" font-size="12">no samples yet</text>"#,
            "</svg>\n"
        ),
        escape(opts.title)
    )
}

/// The SVG flamegraph of one value of a heap profile.
pub fn heap_svg(
    profile: &proto::Profile,
    value: HeapValue,
    subtitle: Option<&str>,
) -> Result<Vec<u8>> {
    let stacks = folded(profile, value.sample_type())?;
    let mut out = Vec::new();
    svg(
        &stacks,
        &SvgOptions {
            title: value.title(),
            subtitle,
            count_name: value.count_name(),
        },
        &mut out,
    )?;
    Ok(out)
}

/// The differential flamegraph of one value of two heap profiles: the frames of `new`, as
/// wide as in `new`, red where they grew since `base` and blue where they shrank (the more,
/// the deeper); each tooltip gives the change as a share of `new`'s total. What `base` had
/// and `new` no longer has has no width to draw: the table of `gotrace diff` lists it.
pub fn heap_diff_svg(
    base: &proto::Profile,
    new: &proto::Profile,
    value: HeapValue,
    subtitle: Option<&str>,
) -> Result<Vec<u8>> {
    let new_stacks = folded(new, value.sample_type())?;
    let title = format!("{}: growth", value.title());
    let opts = SvgOptions {
        title: &title,
        subtitle,
        count_name: value.count_name(),
    };
    let mut out = Vec::new();
    if new_stacks.lines().all(|l| l.trim().is_empty()) {
        svg("", &opts, &mut out)?;
        return Ok(out);
    }
    let mut pairs = Vec::new();
    inferno::differential::from_readers(
        // Absolute values: a heap that grew everywhere is red everywhere, as it should be.
        inferno::differential::Options::default(),
        folded(base, value.sample_type())?.as_bytes(),
        new_stacks.as_bytes(),
        &mut pairs,
    )
    .map_err(|e| Error::Export(format!("pairing the stacks: {e}")))?;
    let pairs =
        String::from_utf8(pairs).map_err(|e| Error::Export(format!("pairing the stacks: {e}")))?;
    svg(&pairs, &opts, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings: 0 "", 1 "inuse_space", 2 "bytes", 3 "main.a", 4 "main.b", 5 "main.inl".
    fn profile() -> proto::Profile {
        let func = |id, name| proto::Function {
            id,
            name,
            system_name: name,
            ..Default::default()
        };
        let line = |function_id| proto::Line {
            function_id,
            line: 1,
            column: 0,
        };
        proto::Profile {
            sample_type: vec![proto::ValueType { r#type: 1, unit: 2 }],
            string_table: ["", "inuse_space", "bytes", "main.a", "main.b", "main.inl"]
                .map(String::from)
                .to_vec(),
            function: vec![func(1, 3), func(2, 4), func(3, 5)],
            location: vec![
                proto::Location {
                    id: 1,
                    address: 0x10,
                    line: vec![line(3), line(1)],
                    ..Default::default()
                },
                proto::Location {
                    id: 2,
                    address: 0x20,
                    line: vec![line(2)],
                    ..Default::default()
                },
                proto::Location {
                    id: 3,
                    address: 0x4abc,
                    ..Default::default()
                },
            ],
            sample: vec![
                proto::Sample {
                    location_id: vec![1, 2],
                    value: vec![100],
                    ..Default::default()
                },
                proto::Sample {
                    location_id: vec![1, 2],
                    value: vec![20],
                    ..Default::default()
                },
                proto::Sample {
                    location_id: vec![3, 2],
                    value: vec![5],
                    ..Default::default()
                },
                proto::Sample {
                    location_id: vec![2],
                    value: vec![0],
                    ..Default::default()
                },
                proto::Sample {
                    location_id: vec![],
                    value: vec![7],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn folded_is_root_first_with_inlines_expanded() {
        assert_eq!(
            folded(&profile(), "inuse_space").unwrap(),
            "[unknown] 7\nmain.b;0x4abc 5\nmain.b;main.a;main.inl 120\n"
        );
        assert!(folded(&profile(), "alloc_space").is_err());
        let mut broken = profile();
        broken.sample[0].location_id.push(99);
        assert!(folded(&broken, "inuse_space").is_err());
        broken.sample_type[0].r#type = 1000;
        assert!(folded(&broken, "inuse_space").is_err());
    }

    #[test]
    fn svg_names_frames_and_survives_no_samples() {
        let opts = SvgOptions {
            title: "t <&>",
            subtitle: None,
            count_name: "bytes",
        };
        let mut out = Vec::new();
        svg(&folded(&profile(), "inuse_space").unwrap(), &opts, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("main.inl") && text.contains("t &lt;&amp;&gt;"));
        let mut out = Vec::new();
        svg("", &opts, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("no samples yet") && text.contains("t &lt;&amp;&gt;"));
    }
}
