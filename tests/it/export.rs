//! gotrace's pprof and flamegraph exports, checked with the real tools.
//!
//! The oracle is Go itself: the `heapdump` fixture writes its own heap profile
//! (`pprof.WriteHeapProfile`) and, at the same instant, the raw `runtime.MemProfile` records
//! behind it. gotrace exports those records, and `go tool pprof` of the fixture's toolchain
//! must show the same thing for both files (`-top` for every sample type, `-traces`), must
//! find the same mapping and location addresses (PIE included), must read the sample types,
//! period and labels it expects (`-raw`), and must symbolize gotrace's profile against the
//! binary when gotrace leaves the symbols out. Counts the fixture knows (objects kept and
//! allocated at each site, with every allocation sampled) are checked too. A second test
//! builds a profile by hand from function addresses of the binary's `.gopclntab`.
//!
//! Nothing here loads eBPF.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime},
};

use anyhow::{bail, ensure, Context, Result};
use gotrace::{
    binary::GoBinary,
    export::{
        self,
        flamegraph::{self, HeapValue},
    },
    goruntime::heapprof::{HeapProfile, HeapRecord},
    model::heap,
    pprof::{self, proto, Executable, Mapping},
    symbols::{Frame, Symbolizer},
};
use gotrace_tests::{children, fixtures, go, Toolchain, Variant};

/// Writes a file the way gotrace writes its outputs.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    gotrace::files::OutFile::open(path)?.write(bytes)?;
    Ok(())
}

const SAMPLE_TYPES: [&str; 4] = [
    "alloc_objects",
    "alloc_space",
    "inuse_objects",
    "inuse_space",
];

/// One `runtime.MemProfileRecord` as the fixture printed it.
struct RawRecord {
    alloc_objects: u64,
    free_objects: u64,
    alloc_bytes: u64,
    /// Runtime return addresses, leaf first.
    stack: Vec<u64>,
}

/// What one run of the fixture wrote.
struct Snapshot {
    dir: PathBuf,
    exe: PathBuf,
    rate: u64,
    /// Runtime address of main.main.
    anchor: u64,
    records: Vec<RawRecord>,
    /// (function, objects allocated, objects kept) per site the program knows.
    expect: Vec<(String, u64, u64)>,
}

fn snapshot(tc: Toolchain, variant: Variant, rate: u64) -> Result<Snapshot> {
    let exe = fixtures::build("heapdump", tc, variant)?;
    let dir = fixtures::workspace_root()
        .join("target/export-it")
        .join(format!("go{}-{}-rate{rate}", tc.release, variant.name()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let out = children::output(
        Command::new(&exe)
            .arg(format!("-rate={rate}"))
            .arg("-out")
            .arg(&dir),
    )
    .with_context(|| format!("running {}", exe.display()))?;
    ensure!(
        out.status.success(),
        "{} failed: {}",
        exe.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.join("records.txt"))?;
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16);
    let mut snap = Snapshot {
        dir,
        exe,
        rate: 0,
        anchor: 0,
        records: Vec::new(),
        expect: Vec::new(),
    };
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["rate", r] => snap.rate = r.parse()?,
            ["anchor", "main.main", a] => snap.anchor = hex(a)?,
            ["record", ao, fo, ab, _fb, stack @ ..] => snap.records.push(RawRecord {
                alloc_objects: ao.parse()?,
                free_objects: fo.parse()?,
                alloc_bytes: ab.parse()?,
                stack: stack.iter().map(|s| hex(s)).collect::<Result<_, _>>()?,
            }),
            ["expect", f, allocated, kept] => {
                snap.expect
                    .push((f.to_string(), allocated.parse()?, kept.parse()?))
            }
            _ => bail!("unexpected line in records.txt: {line:?}"),
        }
    }
    ensure!(snap.rate == rate && snap.anchor != 0 && !snap.records.is_empty());
    Ok(snap)
}

fn open(path: &Path) -> Result<std::sync::Arc<GoBinary>> {
    Ok(GoBinary::open(path, &path.display().to_string())?.into())
}

/// `go tool pprof <args> <file>` of the toolchain that built the binary.
pub(crate) fn pprof(tc: Toolchain, args: &[&str], file: &Path) -> Result<String> {
    let out = children::output(tc.command().args(["tool", "pprof"]).args(args).arg(file))
        .context("running go tool pprof")?;
    ensure!(
        out.status.success(),
        "go tool pprof {args:?} {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// `go tool pprof -http` serving `file`: each of `pages` fetched, with its body. The web UI
/// is what most users open; it must render the file, not only the text reports.
fn pprof_http(tc: Toolchain, file: &Path, pages: &[&str]) -> Result<Vec<String>> {
    use std::io::{Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = children::spawn(
        tc.command()
            .args(["tool", "pprof", "-no_browser", &format!("-http={addr}")])
            .arg(file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped()),
    )
    .context("running go tool pprof -http")?;
    let result = (|| {
        let started = std::time::Instant::now();
        let get = |page: &str| -> Result<String> {
            let mut c = std::net::TcpStream::connect(&addr)?;
            write!(c, "GET {page} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
            let mut response = String::new();
            c.read_to_string(&mut response)?;
            Ok(response)
        };
        while std::net::TcpStream::connect(&addr).is_err() {
            if let Some(status) = server.try_wait()? {
                bail!("go tool pprof -http exited: {status}");
            }
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "pprof -http never listened"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        pages
            .iter()
            .map(|page| {
                let response = get(page)?;
                ensure!(
                    response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
                    "GET {page}: {}",
                    response.lines().next().unwrap_or("")
                );
                Ok(response)
            })
            .collect()
    })();
    // `go tool` runs pprof as its child: killing `go` alone would leave pprof listening.
    children::kill_group(&mut server);
    result
}

/// A pprof report without the lines that legitimately differ between two files of the same
/// data: when each was written and the build ID (Go's runtime/pprof records only a GNU build
/// ID, gotrace falls back to the Go build ID; checked separately).
fn report_body(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("Time:") && !l.starts_with("Build ID:"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The `-traces` blocks whose value is not zero. Go's file also has zero-count buckets
/// created between the collection and the write (pprof's own allocations, published only
/// at the next GC), which gotrace's snapshot, taken a moment later, cannot size.
fn nonzero_traces(text: &str) -> Vec<String> {
    text.split("-----------+-------------------------------------------------------\n")
        .skip(1)
        .filter(|block| {
            let value_line = block.lines().find(|l| !l.contains(":  ")).unwrap_or("");
            value_line.split_whitespace().next() != Some("0")
        })
        .map(str::to_string)
        .collect()
}

/// The `-top` rows: (function as pprof names it, flat value as printed).
fn top_rows(text: &str) -> Vec<(String, String)> {
    text.lines()
        .skip_while(|l| !l.trim_start().starts_with("flat "))
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 6).then(|| (f[5..].join(" "), f[0].to_string()))
        })
        .collect()
}

/// Frames of a location as `-raw` prints them, leaf first: (function, file:line:column).
type Frames = Vec<(String, String)>;

/// A sample with its locations resolved: values, then (address, frames) leaf first.
type ResolvedSample = (Vec<i64>, Vec<(u64, Frames)>);

/// `go tool pprof -raw`, parsed: the sample type names, the samples (values, location ids)
/// and, per location id, its address and frames (function, file:line), leaf first.
pub(crate) struct Raw {
    header: Vec<String>,
    pub(crate) sample_types: Vec<String>,
    samples: Vec<(Vec<i64>, Vec<u64>)>,
    locations: BTreeMap<u64, (u64, Frames)>,
}

pub(crate) fn parse_raw(text: &str) -> Result<Raw> {
    let mut raw = Raw {
        header: Vec::new(),
        sample_types: Vec::new(),
        samples: Vec::new(),
        locations: BTreeMap::new(),
    };
    let mut section = "header";
    let mut current = None;
    for line in text.lines() {
        match line {
            "Samples:" => {
                section = "types";
                continue;
            }
            "Locations" => {
                section = "locations";
                continue;
            }
            "Mappings" => {
                section = "mappings";
                continue;
            }
            _ => {}
        }
        match section {
            "header" => raw.header.push(line.to_string()),
            "types" => {
                raw.sample_types = line.split_whitespace().map(String::from).collect();
                section = "samples";
            }
            "samples" => {
                let Some((values, ids)) = line.split_once(':') else {
                    continue;
                };
                // Label lines ("bytes:[64]") have no numeric values before the colon.
                let Ok(values) = values
                    .split_whitespace()
                    .map(str::parse)
                    .collect::<Result<Vec<i64>, _>>()
                else {
                    continue;
                };
                let ids = ids
                    .split_whitespace()
                    .map(str::parse)
                    .collect::<Result<Vec<u64>, _>>()?;
                raw.samples.push((values, ids));
            }
            "locations" => {
                let mut f = line.split_whitespace().peekable();
                let frame_of = |f: &mut std::iter::Peekable<std::str::SplitWhitespace>| {
                    let name = f.next()?.to_string();
                    let file_line = f.next().unwrap_or("").to_string();
                    Some((name, file_line))
                };
                if line.starts_with("             ") {
                    if let Some(frame) = frame_of(&mut f) {
                        let id = current.context("inline frame before any location")?;
                        raw.locations.get_mut(&id).unwrap().1.push(frame);
                    }
                    continue;
                }
                let id: u64 = f
                    .next()
                    .context("location id")?
                    .trim_end_matches(':')
                    .parse()?;
                let addr = u64::from_str_radix(
                    f.next()
                        .context("location address")?
                        .trim_start_matches("0x"),
                    16,
                )?;
                if f.peek().is_some_and(|t| t.starts_with("M=")) {
                    f.next();
                }
                let frames = frame_of(&mut f).into_iter().collect();
                raw.locations.insert(id, (addr, frames));
                current = Some(id);
            }
            _ => {}
        }
    }
    Ok(raw)
}

/// The folded stacks of `sample_type` as `-raw` shows them, in the format of
/// `flamegraph::folded`: the independent rendering of the same profile by pprof.
fn folded_from_raw(raw: &Raw, sample_type: &str) -> Result<String> {
    let want = format!("{sample_type}/");
    let index = raw
        .sample_types
        .iter()
        .position(|t| t.starts_with(&want))
        .context("sample type missing from -raw")?;
    let mut stacks: BTreeMap<String, i64> = BTreeMap::new();
    for (values, ids) in &raw.samples {
        if values[index] <= 0 {
            continue;
        }
        let mut names = Vec::new();
        for id in ids.iter().rev() {
            let (addr, frames) = &raw.locations[id];
            if frames.is_empty() {
                names.push(format!("{addr:#x}"));
            }
            names.extend(frames.iter().rev().map(|(n, _)| n.clone()));
        }
        if names.is_empty() {
            names.push(flamegraph::NO_STACK.to_string());
        }
        *stacks.entry(names.join(";")).or_default() += values[index];
    }
    Ok(stacks.iter().map(|(s, v)| format!("{s} {v}\n")).collect())
}

/// The SVG parses as XML and its frame tooltips name `functions`.
fn check_svg(svg: &[u8], title: &str, functions: &[&str]) -> Result<()> {
    let text = std::str::from_utf8(svg)?;
    // inferno's SVG declares the SVG 1.1 DTD.
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, options)
        .context("the SVG is not well-formed XML")?;
    let titles: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("title"))
        .filter_map(|n| n.text())
        .collect();
    for f in functions {
        ensure!(
            titles.iter().any(|t| t.starts_with(&format!("{f} ("))),
            "no frame of {f} in the SVG"
        );
    }
    ensure!(
        doc.descendants().any(|n| n.text() == Some(title)),
        "the SVG has no title {title:?}"
    );
    Ok(())
}

fn heap_of(snap: &Snapshot, bias: u64) -> HeapProfile {
    HeapProfile {
        records: snap
            .records
            .iter()
            // A bucket created after the last GC has no published counts, and the public
            // API then gives no way to know its object size: Go's file shows it as zeros.
            .filter(|r| r.alloc_objects > 0)
            .map(|r| HeapRecord {
                bucket: 0,
                stack: r.stack.iter().map(|pc| pc.wrapping_sub(bias)).collect(),
                object_size: r.alloc_bytes / r.alloc_objects,
                allocs: r.alloc_objects,
                frees: r.free_objects,
            })
            .collect(),
        sample_rate: snap.rate,
        time: SystemTime::now(),
        duration: Duration::ZERO,
    }
}

/// The build ID Go's runtime/pprof records (GNU) when the binary has one, else `go tool
/// buildid`'s answer.
fn expected_build_id(tc: Toolchain, go_profile: &proto::Profile, exe: &Path) -> Result<String> {
    let go_id = &go_profile.string_table[go_profile.mapping[0].build_id as usize];
    if !go_id.is_empty() {
        return Ok(go_id.clone());
    }
    let out = children::output(tc.command().args(["tool", "buildid"]).arg(exe))?;
    ensure!(out.status.success(), "go tool buildid failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

fn compare_with_go(tc: Toolchain, variant: Variant, rate: u64) -> Result<()> {
    let ctx = format!("Go {} {} rate {rate}", tc.release, variant.name());
    let snap = snapshot(tc, variant, rate)?;
    let binary = open(&snap.exe)?;
    let main = binary.pclntab().find("main.main").context("main.main")?;
    let bias = snap.anchor.wrapping_sub(main.entry);
    ensure!(
        (bias == 0) == (variant == Variant::Default),
        "{ctx}: load bias {bias:#x}"
    );
    let heap = heap_of(&snap, bias);
    let symbolizer = Symbolizer::new(binary.clone());
    let symbolize = |pc: u64| symbolizer.frames(pc);
    let exe = Executable {
        symbolize: &symbolize,
        load_bias: bias,
        mapping: Mapping::main_executable(&binary, bias),
    };
    let ours = pprof::heap_profile(&heap, &exe)?;
    let ours_path = snap.dir.join(export::HEAP_PPROF);
    write_file(&ours_path, &pprof::gzip(&ours)?)?;
    let go_path = snap.dir.join("go.pb.gz");
    let go_profile = pprof::decode(&std::fs::read(&go_path)?)?;

    // The main mapping: Go reads it from /proc/self/maps, gotrace from the ELF file.
    let (g, o) = (&go_profile.mapping[0], &ours.mapping[0]);
    let gs = |p: &proto::Profile, i: i64| p.string_table[i as usize].clone();
    assert_eq!(
        (
            g.memory_start,
            g.memory_limit,
            g.file_offset,
            gs(&go_profile, g.filename)
        ),
        (
            o.memory_start,
            o.memory_limit,
            o.file_offset,
            gs(&ours, o.filename)
        ),
        "{ctx}: main mapping"
    );
    assert_eq!(
        gs(&ours, o.build_id),
        expected_build_id(tc, &go_profile, &snap.exe)?,
        "{ctx}: build ID"
    );

    for index in SAMPLE_TYPES {
        let flag = format!("-sample_index={index}");
        let go_top = pprof(tc, &["-symbolize=none", "-top", &flag], &go_path)?;
        let our_top = pprof(tc, &["-symbolize=none", "-top", &flag], &ours_path)?;
        assert_eq!(
            report_body(&our_top),
            report_body(&go_top),
            "{ctx}: go tool pprof -top -sample_index={index}"
        );
        let go_traces = pprof(tc, &["-symbolize=none", "-traces", &flag], &go_path)?;
        let our_traces = pprof(tc, &["-symbolize=none", "-traces", &flag], &ours_path)?;
        let ours_blocks = nonzero_traces(&our_traces);
        assert!(
            ours_blocks.len() >= snap.expect.len(),
            "{ctx}: {our_traces}"
        );
        assert_eq!(
            ours_blocks,
            nonzero_traces(&go_traces),
            "{ctx}: go tool pprof -traces -sample_index={index}"
        );
    }

    // -raw: the same sample types, period and, sample by sample, the same values, labels and
    // frames at the same runtime addresses.
    let go_raw_text = pprof(tc, &["-symbolize=none", "-raw"], &go_path)?;
    let our_raw_text = pprof(tc, &["-symbolize=none", "-raw"], &ours_path)?;
    let (go_raw, our_raw) = (parse_raw(&go_raw_text)?, parse_raw(&our_raw_text)?);
    let types = SAMPLE_TYPES.map(|t| {
        let unit = if t.ends_with("objects") {
            "count"
        } else {
            "bytes"
        };
        // pprof marks the default sample type; Go's WriteHeapProfile names none (pprof then
        // defaults to the last one, the same inuse_space).
        let dflt = if t == "inuse_space" { "[dflt]" } else { "" };
        format!("{t}/{unit}{dflt}")
    });
    assert_eq!(our_raw.sample_types, types, "{ctx}");
    assert_eq!(
        our_raw.sample_types.join(" ").replace("[dflt]", ""),
        go_raw.sample_types.join(" "),
        "{ctx}"
    );
    let period = |r: &Raw| -> Vec<String> {
        r.header
            .iter()
            .filter(|l| l.starts_with("Period"))
            .cloned()
            .collect()
    };
    assert_eq!(
        period(&our_raw),
        [
            "PeriodType: space bytes".to_string(),
            format!("Period: {rate}")
        ],
        "{ctx}"
    );
    assert_eq!(period(&our_raw), period(&go_raw), "{ctx}");
    let resolved = |r: &Raw| -> Vec<ResolvedSample> {
        r.samples
            .iter()
            .filter(|(v, _)| v.iter().any(|&x| x != 0))
            .map(|(v, ids)| {
                (
                    v.clone(),
                    ids.iter().map(|id| r.locations[id].clone()).collect(),
                )
            })
            .collect()
    };
    assert_eq!(resolved(&our_raw), resolved(&go_raw), "{ctx}: -raw samples");
    let labels = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.trim_start().starts_with("bytes:["))
            .map(|l| l.trim().to_string())
            .collect()
    };
    let ours_labels = labels(&our_raw_text);
    assert_eq!(
        ours_labels.len(),
        ours.sample.len(),
        "{ctx}: one bytes label per sample"
    );

    // The web UI renders the same sites: the top table and the flame graph name each.
    let pages = pprof_http(tc, &ours_path, &["/ui/top", "/ui/flamegraph"])?;
    // (At rates above 1 a small site may have no sample: the sites pprof's -top shows.)
    let default_top = pprof(tc, &["-symbolize=none", "-top"], &ours_path)?;
    let shown: Vec<&str> = snap
        .expect
        .iter()
        .map(|e| e.0.as_str())
        .filter(|f| default_top.contains(f))
        .collect();
    ensure!(!shown.is_empty(), "{ctx}: no known site in {default_top}");
    for f in shown {
        for (page, body) in ["/ui/top", "/ui/flamegraph"].iter().zip(&pages) {
            ensure!(body.contains(f), "{ctx}: pprof -http {page} lacks {f}");
        }
    }

    // What the program knows: with every allocation sampled, exact counts per site.
    if rate == 1 {
        for (index, pick) in [("alloc_objects", 1), ("inuse_objects", 2)] {
            let flag = format!("-sample_index={index}");
            let rows = top_rows(&pprof(tc, &["-symbolize=none", "-top", &flag], &ours_path)?);
            for e in &snap.expect {
                let want = if pick == 1 { e.1 } else { e.2 };
                let got = rows
                    .iter()
                    .find(|(name, _)| name.trim_end_matches(" (inline)") == e.0)
                    .map(|(_, flat)| flat.as_str())
                    .unwrap_or("0");
                assert_eq!(got, want.to_string(), "{ctx}: {index} of {}", e.0);
            }
        }
    }

    // Folded stacks: exactly what pprof's own reading of the file gives.
    for value in [HeapValue::InuseBytes, HeapValue::AllocBytes] {
        let folded = flamegraph::folded(&ours, value.sample_type())?;
        assert_eq!(
            folded,
            folded_from_raw(&our_raw, value.sample_type())?,
            "{ctx}: folded {value:?}"
        );
        let svg = flamegraph::heap_svg(&ours, value, Some("heapdump"))?;
        // Every known site the sampler caught (at rates above 1 a small site may have no
        // sample at all).
        let in_folded = |f: &str| {
            folded.lines().any(|l| {
                l.rsplit_once(' ')
                    .is_some_and(|(stack, _)| stack.split(';').any(|x| x == f))
            })
        };
        let mut functions = vec!["main.main"];
        functions.extend(
            snap.expect
                .iter()
                .map(|e| e.0.as_str())
                .filter(|f| in_folded(f)),
        );
        if rate == 1 {
            let kept = snap.expect.iter().filter(|e| e.2 > 0).count();
            let wanted = match value {
                HeapValue::InuseBytes => kept,
                _ => snap.expect.len(),
            };
            assert_eq!(functions.len(), 1 + wanted, "{ctx}: {folded}");
        }
        check_svg(&svg, value.title(), &functions).with_context(|| ctx.clone())?;
        let svg_path = snap.dir.join(format!("{value:?}.svg"));
        write_file(
            &svg_path,
            &flamegraph::heap_svg(&ours, value, Some("heapdump"))?,
        )?;
        assert_eq!(
            std::fs::read(&svg_path)?,
            svg,
            "{ctx}: the same SVG, written"
        );
    }

    // Without symbols, pprof symbolizes the runtime addresses itself against the binary the
    // mapping names (go tool pprof reads its pclntab: one frame per address, the physical
    // function with the innermost line). That only works if the mapping and the load bias
    // are right.
    let nothing = |_pc: u64| Vec::<Frame>::new();
    let bare_exe = Executable {
        symbolize: &nothing,
        ..exe
    };
    let bare = pprof::heap_profile(&heap, &bare_exe)?;
    ensure!(bare.location.iter().all(|l| l.line.is_empty()));
    ensure!(!bare.mapping[0].has_functions);
    let bare_path = snap.dir.join("bare.pb.gz");
    write_file(&bare_path, &pprof::gzip(&bare)?)?;
    let bare_raw = parse_raw(&pprof(tc, &["-symbolize=local", "-raw"], &bare_path)?)?;
    let by_addr: BTreeMap<u64, &Frames> =
        our_raw.locations.values().map(|(a, f)| (*a, f)).collect();
    let mut checked = 0;
    for (addr, frames) in bare_raw.locations.values() {
        let Some(ours) = by_addr.get(addr) else {
            continue;
        };
        let physical = &ours.last().context("no frames")?.0;
        let innermost_line = &ours.first().context("no frames")?.1;
        assert_eq!(
            frames.first().map(|(n, l)| (n, l)),
            Some((physical, innermost_line)),
            "{ctx}: pprof's symbolization of {addr:#x}"
        );
        checked += 1;
    }
    ensure!(
        checked == by_addr.len(),
        "{ctx}: {checked} of {} addresses",
        by_addr.len()
    );
    // Without names gotrace can neither hide the allocator's frames, nor drop
    // runtime.goexit, nor fold the fake return addresses of inlined calls into their call:
    // those are the only extra addresses of each stack.
    ensure!(bare_raw.samples.len() == our_raw.samples.len(), "{ctx}");
    let function = |raw: &Raw, id: &u64| raw.locations[id].1.first().map(|f| f.0.clone());
    for ((_, bare_ids), (_, our_ids)) in bare_raw.samples.iter().zip(&our_raw.samples) {
        let mut wanted = our_ids.iter().map(|id| our_raw.locations[id].0).peekable();
        let mut previous: Option<String> = None;
        for id in bare_ids {
            let name = function(&bare_raw, id);
            if wanted.peek() == Some(&bare_raw.locations[id].0) {
                wanted.next();
            } else {
                let n = name.as_deref().unwrap_or("");
                ensure!(
                    n.starts_with("runtime.")
                        || n.starts_with("internal/runtime/")
                        || name == previous,
                    "{ctx}: pprof names {:#x} {n:?}, which gotrace did not show",
                    bare_raw.locations[id].0
                );
            }
            previous = name;
        }
        ensure!(wanted.next().is_none(), "{ctx}: a stack lost addresses");
    }
    Ok(())
}

#[test]
fn heap_profile_matches_go_newest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let tc = Toolchain::find(go::NEWEST)?;
    for variant in [Variant::Default, Variant::Pie] {
        for rate in [1, 4096] {
            compare_with_go(tc, variant, rate)?;
        }
    }
    Ok(())
}

#[test]
fn heap_profile_matches_go_oldest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let tc = Toolchain::find(go::OLDEST)?;
    for variant in [Variant::Default, Variant::Pie] {
        for rate in [1, 4096] {
            compare_with_go(tc, variant, rate)?;
        }
    }
    Ok(())
}

/// A heap profile with known counts on stacks made of function addresses from the binary's
/// `.gopclntab` (each stack entry is a return address: the entry + 1, so that the call is
/// the function's first instruction).
#[test]
fn synthetic_heap_profile_from_pclntab() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let tc = Toolchain::find(go::NEWEST)?;
    let exe_path = fixtures::build("heapdump", tc, Variant::Default)?;
    let binary = open(&exe_path)?;
    let ret = |name: &str| -> Result<u64> {
        Ok(binary
            .pclntab()
            .find(name)
            .with_context(|| name.to_string())?
            .entry
            + 1)
    };
    let rate = 512 * 1024;
    let record = |site: &str, size, allocs, frees| -> Result<HeapRecord> {
        Ok(HeapRecord {
            bucket: 0,
            stack: vec![
                ret("runtime.mallocgc")?,
                ret(site)?,
                ret("main.main")?,
                ret("runtime.main")?,
                ret("runtime.goexit")?,
            ],
            object_size: size,
            allocs,
            frees,
        })
    };
    let heap = HeapProfile {
        records: vec![
            record("main.retain", 1024, 10, 4)?,
            record("main.churn", 4096, 7, 7)?,
        ],
        sample_rate: rate,
        time: SystemTime::now(),
        duration: Duration::from_secs(8),
    };
    let symbolizer = Symbolizer::new(binary.clone());
    let symbolize = |pc: u64| symbolizer.frames(pc);
    let exe = Executable {
        symbolize: &symbolize,
        load_bias: 0,
        mapping: Mapping::main_executable(&binary, 0),
    };
    let profile = pprof::heap_profile(&heap, &exe)?;
    let dir = fixtures::workspace_root().join("target/export-it/synthetic");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(export::HEAP_PPROF);
    write_file(&path, &pprof::gzip(&profile)?)?;

    let (retain_ao, retain_ab) = heap::scale(10, 1024, rate);
    let (retain_io, retain_ib) = heap::scale(6, 1024, rate);
    let (churn_ao, churn_ab) = heap::scale(7, 4096, rate);

    let raw_text = pprof(tc, &["-symbolize=none", "-raw"], &path)?;
    let raw = parse_raw(&raw_text)?;
    assert_eq!(
        raw.sample_types,
        [
            "alloc_objects/count",
            "alloc_space/bytes",
            "inuse_objects/count",
            // pprof marks the profile's default sample type.
            "inuse_space/bytes[dflt]"
        ]
    );
    assert!(raw.header.contains(&"PeriodType: space bytes".to_string()));
    assert!(raw.header.contains(&format!("Period: {rate}")));
    assert!(
        raw.header.contains(&"Duration: 8s".to_string()),
        "{raw_text}"
    );
    let names = |ids: &[u64]| -> Vec<String> {
        ids.iter()
            .flat_map(|id| raw.locations[id].1.iter().map(|(n, _)| n.clone()))
            .collect()
    };
    let values = |v: [u64; 4]| v.map(|x| x as i64).to_vec();
    assert_eq!(
        raw.samples
            .iter()
            .map(|(v, ids)| (v.clone(), names(ids)))
            .collect::<Vec<_>>(),
        [
            (
                values([retain_ao, retain_ab, retain_io, retain_ib]),
                ["main.retain", "main.main", "runtime.main"]
                    .map(String::from)
                    .to_vec()
            ),
            (
                values([churn_ao, churn_ab, 0, 0]),
                ["main.churn", "main.main", "runtime.main"]
                    .map(String::from)
                    .to_vec()
            ),
        ],
        "allocator frames hidden, goexit dropped, values scaled:\n{raw_text}"
    );
    assert_eq!(
        raw_text.matches("bytes:[1024]").count() + raw_text.matches("bytes:[4096]").count(),
        2
    );

    // The default sample type is inuse_space; -sample_index picks another.
    let top = pprof(tc, &["-symbolize=none", "-top"], &path)?;
    assert!(top.contains("Type: inuse_space"), "{top}");
    let inuse: Vec<String> = top_rows(&top).into_iter().map(|r| r.0).collect();
    assert_eq!(inuse, ["main.retain", "main.main", "runtime.main"], "{top}");
    let top = pprof(
        tc,
        &["-symbolize=none", "-top", "-sample_index=alloc_space"],
        &path,
    )?;
    assert!(top.contains("Type: alloc_space"), "{top}");
    let mut alloc: Vec<String> = top_rows(&top).into_iter().map(|r| r.0).collect();
    alloc.sort();
    assert_eq!(
        alloc,
        ["main.churn", "main.main", "main.retain", "runtime.main"],
        "{top}"
    );
    let traces = pprof(
        tc,
        &["-symbolize=none", "-traces", "-sample_index=alloc_objects"],
        &path,
    )?;
    assert!(
        traces.contains(&format!("{retain_ao}   main.retain\n")),
        "{traces}"
    );

    // Folded stacks, exactly; and as pprof's reading of the file gives them.
    let expected_inuse = format!("runtime.main;main.main;main.retain {retain_ib}\n");
    let expected_alloc = format!(
        "runtime.main;main.main;main.churn {churn_ab}\nruntime.main;main.main;main.retain {retain_ab}\n"
    );
    assert_eq!(flamegraph::folded(&profile, "inuse_space")?, expected_inuse);
    assert_eq!(flamegraph::folded(&profile, "alloc_space")?, expected_alloc);
    assert_eq!(folded_from_raw(&raw, "inuse_space")?, expected_inuse);
    assert_eq!(folded_from_raw(&raw, "alloc_space")?, expected_alloc);

    let svg = flamegraph::heap_svg(&profile, HeapValue::InuseBytes, None)?;
    check_svg(
        &svg,
        HeapValue::InuseBytes.title(),
        &["main.retain", "main.main"],
    )?;
    ensure!(!String::from_utf8_lossy(&svg).contains("main.churn"));
    let svg = flamegraph::heap_svg(&profile, HeapValue::AllocBytes, None)?;
    check_svg(
        &svg,
        HeapValue::AllocBytes.title(),
        &["main.retain", "main.churn"],
    )?;
    let svg_path = dir.join("alloc.svg");
    write_file(&svg_path, &svg)?;
    assert_eq!(std::fs::read(&svg_path)?, svg);
    Ok(())
}
