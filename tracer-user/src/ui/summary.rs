//! The live summary line printed every tick.

use crate::session::Summary;

/// `  12s │ goroutines 1031 │ goroutine-create 120/s  goroutine-exit 118/s ... │ lost 0`
pub fn format(s: &Summary) -> String {
    let mut line = format!("{:>5}s", s.elapsed.as_secs());
    match s.live_goroutines {
        Some(n) => line.push_str(&format!(" │ goroutines {n}")),
        None => line.push_str(" │ goroutines ?"),
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
