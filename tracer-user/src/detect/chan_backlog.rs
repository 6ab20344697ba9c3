//! `chan-backlog`: a buffered channel whose producers outpace its consumers. The buffer fills
//! and stays full with producers queued behind it, or keeps filling look after look, or sits
//! nearly full while nobody receives from it (its receive index `recvx` does not move), blocked
//! senders or not. Channels are learnt from goroutines blocked on them (and from
//! `--chan-sends`, `--chan-make`), and read every tick.

use std::collections::VecDeque;

use serde_json::json;

use super::{config_defaults, goroutine_stack, Context, Detector, Finding};
use crate::{goruntime::channels::ChanState, model::capped::Capped, observe::Look, symbols::Frame};

pub const PATTERN: &str = "chan-backlog";

#[derive(Clone, Debug, clap::Args)]
#[group(skip)]
pub struct Config {
    /// chan-backlog: consecutive looks a channel must stay full (with producers blocked).
    #[arg(
        id = "chan-full-looks",
        long = "chan-full-looks",
        value_name = "N",
        default_value_t = 3
    )]
    pub full_looks: usize,
    /// Or filling at every one of this many consecutive looks ...
    #[arg(skip = 5usize)]
    pub rising_looks: usize,
    /// ... to at least this fraction of its capacity.
    #[arg(skip = 0.5)]
    pub min_fill: f64,
    /// chan-backlog: how long a nearly full buffer nobody receives from is tolerated.
    #[arg(id = "chan-stall", long = "chan-stall", value_name = "DUR", default_value = "10s", value_parser = crate::units::parse_duration)]
    pub stall: std::time::Duration,
    /// What "nearly full" is, as a fraction of the capacity.
    #[arg(skip = 0.9)]
    pub stall_fill: f64,
}

config_defaults!(Config);

/// Channels followed at once, and looks kept per channel.
const MAX_CHANNELS: usize = 10_000;
const WINDOW: usize = 32;
/// Below this capacity `recvx` comes back to the same slot too often (a buffer of one always
/// reads 0) for its stillness to mean that nobody receives.
const MIN_STALL_CAP: u64 = 8;

#[derive(Debug, Default)]
struct Tracked {
    looks: VecDeque<(f64, ChanState)>,
    /// Where a producer waited on it when it was full, and a consumer when it was empty. Taken
    /// as soon as the goroutine is seen blocked (it may move on before the next look) and kept:
    /// once the channel backs up the consumers are busy elsewhere.
    producer: Option<Vec<Frame>>,
    consumer: Option<Vec<Frame>>,
    /// The `make` that created it (`--chan-make`), a return address.
    made_at: Option<u64>,
    /// Since when it has been nearly full with its receive index still.
    stalled_since: Option<f64>,
}

pub struct ChanBacklog {
    config: Config,
    channels: Capped<u64, Tracked>,
}

impl ChanBacklog {
    pub fn new(config: Config) -> Self {
        ChanBacklog {
            config,
            channels: Capped::new(MAX_CHANNELS),
        }
    }
}

impl Detector for ChanBacklog {
    /// One look at the followed channels (the observer picks and reads them).
    fn observe(&mut self, look: &Look, cx: &Context<'_>) {
        let (Some(channels), Some(gs)) = (&look.channels, &look.goroutines) else {
            return;
        };
        let stack_of = |g: Option<u64>| {
            let pcs = gs.stack(g?)?;
            Some(goroutine_stack(pcs, cx.sym)).filter(|s| !s.is_empty())
        };
        for c in channels {
            let tracked = self.channels.entry(c.addr, Tracked::default);
            let state = c.state;
            // The address now holds another channel (the old one was freed).
            if tracked
                .looks
                .back()
                .is_some_and(|(_, s)| s.cap != state.cap)
            {
                *tracked = Tracked::default();
            }
            tracked.made_at = cx.model.channels.made.get(&c.addr).map(|m| m.0);
            if tracked.producer.is_none() {
                tracked.producer = stack_of(state.a_sender);
            }
            if tracked.consumer.is_none() {
                tracked.consumer = stack_of(state.a_receiver);
            }
            let nearly_full = state.cap >= MIN_STALL_CAP
                && state.len as f64 >= self.config.stall_fill * state.cap as f64;
            tracked.stalled_since = match tracked.looks.back() {
                Some(&(t, before)) if nearly_full && before.recvx == state.recvx => {
                    Some(tracked.stalled_since.unwrap_or(t))
                }
                _ => None,
            };
            tracked.looks.push_back((look.t, state));
            if tracked.looks.len() > WINDOW {
                tracked.looks.pop_front();
            }
        }
        // Channels the observer stopped following (idle, closed, freed).
        let followed: std::collections::HashSet<u64> = channels.iter().map(|c| c.addr).collect();
        self.channels.retain(|addr, _| followed.contains(addr));
    }

    fn findings(&self, cx: &Context<'_>) -> Vec<Finding> {
        let c = &self.config;
        let mut out = Vec::new();
        for (addr, tracked) in self.channels.iter() {
            let Some(&(t1, now)) = tracked.looks.back() else {
                continue;
            };
            if now.cap == 0 {
                continue;
            }
            let recent = |n: usize| {
                tracked
                    .looks
                    .iter()
                    .rev()
                    .take(n)
                    .map(|(_, s)| *s)
                    .collect::<Vec<_>>()
            };
            let full: Vec<ChanState> = recent(c.full_looks);
            let stays_full =
                full.len() == c.full_looks && full.iter().all(|s| s.len == s.cap && s.senders > 0);
            let rising: Vec<ChanState> = recent(c.rising_looks);
            let fills = rising.len() == c.rising_looks
                && rising.windows(2).all(|w| w[0].len > w[1].len)
                && now.len as f64 >= c.min_fill * now.cap as f64;
            let stalled = tracked
                .stalled_since
                .is_some_and(|since| t1 - since >= c.stall.as_secs_f64());
            let signal = match (stays_full, stalled, fills) {
                (true, _, _) => "full",
                (_, true, _) => "stalled",
                (_, _, true) => "filling",
                _ => continue,
            };
            let (t0, first) = tracked.looks[0];
            let fill_per_s = (now.len as f64 - first.len as f64) / (t1 - t0).max(1e-3);
            // Where a producer waits: the send statement is the first frame outside the runtime.
            let stack = tracked.producer.clone().unwrap_or_default();
            let at = |pc: u64| cx.sym.caller_frame(pc.wrapping_sub(cx.load_bias));
            let make_site = tracked.made_at.map(at);
            // A stalled buffer may have no producer waiting: the latest send (`--chan-sends`)
            // or the `make` (`--chan-make`) says which channel it is.
            let last_send = cx
                .model
                .channels
                .by_address
                .get(addr)
                .map(|s| at(s.last_caller));
            let site = stack
                .first()
                .cloned()
                .or_else(|| last_send.clone())
                .or_else(|| make_site.clone())
                .unwrap_or_else(|| Frame::unknown(*addr));
            out.push(Finding {
                pattern: PATTERN,
                site,
                stack,
                evidence: json!({
                    "signal": signal,
                    "stalled_s": tracked.stalled_since.map(|since| (t1 - since).round()),
                    "channel": format!("{addr:#x}"),
                    "capacity": now.cap,
                    "len": now.len,
                    "fill": (now.len as f64 / now.cap as f64 * 100.0).round() / 100.0,
                    "fill_per_s": (fill_per_s * 10.0).round() / 10.0,
                    "senders_blocked": now.senders,
                    "receivers_blocked": now.receivers,
                    "make_site": make_site,
                    "last_send": last_send,
                    "consumer_site": tracked.consumer.as_ref().and_then(|s| s.first()),
                    "looks": tracked.looks.len(),
                }),
                hint: if signal == "stalled" {
                    "nothing receives from this nearly full channel: is its consumer gone, stuck, or waiting on something else? make the producer give up (select with ctx.Done() or a default case) when the consumer stops"
                } else {
                    "producers outpace the consumer of this channel: add consumers, make the producer back off or drop, or bound the work upstream; a bigger buffer only delays the backlog"
                }
                .into(),
            });
        }
        out
    }
}
