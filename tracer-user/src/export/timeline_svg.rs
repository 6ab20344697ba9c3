//! `timeline.svg`: the session's timeline (`report.timeline`) as charts that any viewer opens —
//! heap in use against the GC's goal, goroutines, their stack bytes, and GC cycles forced and
//! automatic — with their titles, legends and latest values as SVG text.

use std::fmt::Write;

use crate::{model::timeline::TimePoint, units::human_bytes};

const WIDTH: f64 = 960.0;
const PANEL: f64 = 150.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 40.0;

struct Series {
    name: &'static str,
    colour: &'static str,
    value: fn(&TimePoint) -> Option<f64>,
}

struct Panel {
    title: &'static str,
    bytes: bool,
    series: &'static [Series],
}

const PANELS: &[Panel] = &[
    Panel {
        title: "Heap",
        bytes: true,
        series: &[
            Series {
                name: "in use",
                colour: "#d62728",
                value: |p| p.heap_inuse.map(|v| v as f64),
            },
            Series {
                name: "live",
                colour: "#ff7f0e",
                value: |p| p.heap_live.map(|v| v as f64),
            },
            Series {
                name: "GC goal",
                colour: "#7f7f7f",
                value: |p| p.heap_goal.map(|v| v as f64),
            },
        ],
    },
    Panel {
        title: "Goroutines",
        bytes: false,
        series: &[Series {
            name: "goroutines",
            colour: "#1f77b4",
            value: |p| p.goroutines.map(|v| v as f64),
        }],
    },
    Panel {
        title: "Goroutine stacks",
        bytes: true,
        series: &[Series {
            name: "stack bytes",
            colour: "#9467bd",
            value: |p| p.stack_bytes.map(|v| v as f64),
        }],
    },
    Panel {
        title: "GC cycles since attach",
        bytes: false,
        series: &[
            Series {
                name: "automatic",
                colour: "#2ca02c",
                value: |p| Some(f64::from(p.gc_cycles? - p.gc_forced.unwrap_or(0))),
            },
            Series {
                name: "forced",
                colour: "#8c564b",
                value: |p| p.gc_forced.map(f64::from),
            },
        ],
    },
];

/// The charts of `points`, with `subtitle` (the target) under the title.
pub fn svg(points: &[TimePoint], subtitle: &str) -> String {
    let height = TOP + PANELS.len() as f64 * (PANEL + GAP);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r##"<title>gotrace timeline</title><rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="18" font-size="16">gotrace timeline</text><text x="{LEFT}" y="34" fill="#555">{}</text>"##,
        escape(subtitle)
    );
    let t_end = points.last().map_or(1.0, |p| p.t_s).max(1.0);
    for (i, panel) in PANELS.iter().enumerate() {
        let y0 = TOP + GAP + i as f64 * (PANEL + GAP);
        draw_panel(&mut s, panel, points, y0, t_end);
    }
    s.push_str("</svg>\n");
    s
}

fn draw_panel(s: &mut String, panel: &Panel, points: &[TimePoint], y0: f64, t_end: f64) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let max = panel
        .series
        .iter()
        .flat_map(|ser| points.iter().filter_map(ser.value))
        .fold(0.0f64, f64::max)
        .max(1.0);
    let fmt = |v: f64| {
        if panel.bytes {
            human_bytes(v as u64)
        } else {
            format!("{v:.0}")
        }
    };
    let _ = write!(
        s,
        r##"<text x="{LEFT}" y="{}" font-weight="bold">{}</text><rect x="{LEFT}" y="{y0}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#ccc"/><text x="{}" y="{}" text-anchor="end">{}</text><text x="{}" y="{}" text-anchor="end">0</text><text x="{LEFT}" y="{}">0 s</text><text x="{}" y="{}" text-anchor="end">{}</text>"##,
        y0 - 6.0,
        panel.title,
        LEFT - 6.0,
        y0 + 10.0,
        fmt(max),
        LEFT - 6.0,
        y0 + PANEL,
        y0 + PANEL + 14.0,
        WIDTH - RIGHT,
        y0 + PANEL + 14.0,
        humantime::format_duration(std::time::Duration::from_secs(t_end as u64)),
    );
    let mut legend_x = LEFT + 160.0;
    for ser in panel.series {
        let coords: Vec<String> = points
            .iter()
            .filter_map(|p| {
                let v = (ser.value)(p)?;
                Some(format!(
                    "{:.1},{:.1}",
                    LEFT + p.t_s / t_end * plot_w,
                    y0 + PANEL - v / max * PANEL
                ))
            })
            .collect();
        if !coords.is_empty() {
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
                ser.colour,
                coords.join(" ")
            );
        }
        let latest = points
            .iter()
            .rev()
            .find_map(ser.value)
            .map_or("n/a".to_string(), fmt);
        let label = format!("{}: {latest}", ser.name);
        let _ = write!(
            s,
            r#"<rect x="{legend_x}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            y0 - 16.0,
            ser.colour,
            legend_x + 14.0,
            y0 - 6.0,
            escape(&label)
        );
        legend_x += 20.0 + 7.0 * label.len() as f64;
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_charts_name_their_series_and_latest_values() {
        let points: Vec<TimePoint> = (0..10)
            .map(|i| TimePoint {
                t_s: f64::from(i),
                heap_inuse: Some(1 << (20 + i)),
                heap_goal: Some(1 << 30),
                goroutines: Some(i as u64 * 100),
                gc_cycles: Some(i as u32),
                gc_forced: Some(0),
                ..TimePoint::default()
            })
            .collect();
        let svg = svg(&points, "pid 1 <x>");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("goroutines: 900"), "{svg}");
        assert!(svg.contains("in use: 512.0 MiB"), "{svg}");
        assert!(svg.contains("pid 1 &lt;x&gt;"));
        assert_eq!(svg.matches("<polyline").count(), 5);
    }
}
