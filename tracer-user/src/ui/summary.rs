//! The live summary line printed every tick.

use crate::{session::Summary, units::human_bytes};

/// `  12s │ goroutines 1031 (+4 system, stacks 2.1 MiB) │ goroutine-create 120/s ... │ lost 0`:
/// the count first is `runtime.NumGoroutine`'s, the number users compare with.
pub fn format(s: &Summary) -> String {
    let mut line = format!("{:>5}s", s.elapsed.as_secs());
    match s.live_goroutines {
        Some(n) => line.push_str(&format!(" │ goroutines {n}")),
        None => line.push_str(" │ goroutines ?"),
    }
    let details: Vec<String> = [
        s.system_goroutines.map(|n| format!("+{n} system")),
        s.stack_in_use.map(|b| format!("stacks {}", human_bytes(b))),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !details.is_empty() {
        line.push_str(&format!(" ({})", details.join(", ")));
    }
    if let Some(gc) = &s.gc {
        line.push_str(&format!(
            " │ heap {} / goal {} │ gc {}",
            human_bytes(gc.heap_in_use),
            // GOGC=off leaves the goal at its maximum.
            if gc.heap_goal >= 1 << 60 {
                "off (GOGC=off)".to_string()
            } else {
                human_bytes(gc.heap_goal)
            },
            gc.cycles
        ));
    }
    line.push_str(" │");
    for (name, rate) in &s.rates {
        line.push_str(&format!(" {name} {}/s", human_rate(*rate)));
    }
    line.push_str(&format!(" │ lost {}", s.events_lost));
    line
}

fn human_rate(r: f64) -> String {
    if r >= 10_000.0 {
        format!("{:.0}k", r / 1000.0)
    } else if r >= 10.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// A new verdict, as printed live: pattern, site, the key numbers, the hint.
pub fn finding(f: &crate::detect::Finding) -> String {
    let evidence = f
        .evidence
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    // For patterns about waiting goroutines, where they wait.
    let waiting = matches!(
        f.pattern,
        "goroutine-leak" | "chan-backlog" | "finalizer-abuse"
    );
    let blocked_at = f
        .stack
        .first()
        .filter(|_| waiting)
        .map(|fr| format!("\n    waiting in {fr}"))
        .unwrap_or_default();
    format!(
        "FINDING {} at {}{blocked_at}\n    {evidence}\n    hint: {}",
        f.pattern, f.site, f.hint
    )
}
