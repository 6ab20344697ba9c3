//! `chan-backlog`: a buffered channel whose producers outpace its consumers. The buffer fills
//! and stays full with producers queued behind it, or keeps filling look after look. Channels
//! are learnt from goroutines blocked on them (and from `--chan-sends`), and read every tick.

use std::collections::{HashMap, VecDeque};

use serde_json::json;

use super::{goroutine_stack, Finding};
use crate::{
    goruntime::{
        allgs::GSnapshot,
        channels::{ChanState, ChannelReader},
        traceback::{Tracebacks, G_WAITING},
    },
    symbols::{Frame, Symbolizer},
    target::Target,
};

#[derive(Clone, Debug)]
pub struct Config {
    /// Full, with producers blocked, at this many consecutive looks.
    pub full_looks: usize,
    /// Or filling at every one of this many consecutive looks ...
    pub rising_looks: usize,
    /// ... to at least this fraction of its capacity.
    pub min_fill: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            full_looks: 3,
            rising_looks: 5,
            min_fill: 0.5,
        }
    }
}

/// Channels followed at once, and looks kept per channel.
const MAX_CHANNELS: usize = 10_000;
const WINDOW: usize = 32;
/// A channel empty with nobody waiting for this many looks is forgotten.
const IDLE_LOOKS: usize = 30;

#[derive(Debug, Default)]
struct Tracked {
    looks: VecDeque<(f64, ChanState)>,
    idle: usize,
    /// Where a producer waited on it when it was full, and a consumer when it was empty. Read
    /// as soon as the goroutine is seen blocked (it may move on before the next look) and kept:
    /// once the channel backs up the consumers are busy elsewhere.
    producer: Option<Vec<Frame>>,
    consumer: Option<Vec<Frame>>,
    /// The `make` that created it (`--chan-make`), a return address.
    made_at: Option<u64>,
}

#[derive(Debug, Default)]
pub struct ChanBacklog {
    pub config: Config,
    channels: HashMap<u64, Tracked>,
}

impl ChanBacklog {
    pub fn new(config: Config) -> Self {
        ChanBacklog {
            config,
            ..Default::default()
        }
    }

    /// One look: learns the channels blocked goroutines wait on (plus `known`, e.g. from the
    /// send probe) and reads every followed channel.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        t: f64,
        snapshot: &[GSnapshot],
        known: impl IntoIterator<Item = u64>,
        made: &std::collections::HashMap<u64, (u64, u64)>,
        reader: &ChannelReader,
        target: &Target,
        tb: &Tracebacks,
        sym: &Symbolizer,
    ) {
        let blocked: Vec<&GSnapshot> = snapshot
            .iter()
            .filter(|g| g.status == G_WAITING)
            .filter(|g| {
                tb.wait_reason(target, g.waitreason).is_some_and(|r| {
                    r.starts_with("chan send") || r.starts_with("chan receive") || r == "select"
                })
            })
            .collect();
        for addr in reader
            .blocked_on(target, &blocked)
            .into_iter()
            .chain(known)
            .chain(made.keys().copied())
        {
            if self.channels.len() < MAX_CHANNELS {
                self.channels.entry(addr).or_default().made_at = made.get(&addr).map(|m| m.0);
            }
        }
        self.channels.retain(|addr, tracked| {
            let Ok(state) = reader.state(target, *addr) else {
                return false;
            };
            // The address now holds another channel (the old one was freed).
            if tracked
                .looks
                .back()
                .is_some_and(|(_, s)| s.cap != state.cap)
            {
                tracked.looks.clear();
            }
            let idle = state.len == 0 && state.senders == 0 && state.receivers == 0;
            tracked.idle = if idle { tracked.idle + 1 } else { 0 };
            // Only a goroutine the snapshot also shows blocked on a channel: one just woken
            // from the queue is already running elsewhere, and its stack with it.
            let stack_of = |g: Option<u64>| {
                let g = blocked.iter().find(|s| Some(s.addr) == g)?;
                Some(goroutine_stack(target, tb, sym, g)).filter(|s| !s.is_empty())
            };
            if tracked.producer.is_none() {
                tracked.producer = stack_of(state.a_sender);
            }
            if tracked.consumer.is_none() {
                tracked.consumer = stack_of(state.a_receiver);
            }
            tracked.looks.push_back((t, state));
            if tracked.looks.len() > WINDOW {
                tracked.looks.pop_front();
            }
            tracked.idle < IDLE_LOOKS && !state.closed
        });
    }

    pub fn findings(&self, target: &Target, sym: &Symbolizer) -> Vec<Finding> {
        let c = &self.config;
        let mut out = Vec::new();
        for (addr, tracked) in &self.channels {
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
            if !(stays_full || fills) {
                continue;
            }
            let (t0, first) = tracked.looks[0];
            let fill_per_s = (now.len as f64 - first.len as f64) / (t1 - t0).max(1e-3);
            // Where a producer waits: the send statement is the first frame outside the runtime.
            let stack = tracked.producer.clone().unwrap_or_default();
            out.push(Finding {
                pattern: "chan-backlog",
                site: stack.first().cloned().unwrap_or_else(|| Frame::unknown(*addr)),
                stack,
                evidence: json!({
                    "signal": if stays_full { "full" } else { "filling" },
                    "channel": format!("{addr:#x}"),
                    "capacity": now.cap,
                    "len": now.len,
                    "fill": (now.len as f64 / now.cap as f64 * 100.0).round() / 100.0,
                    "fill_per_s": (fill_per_s * 10.0).round() / 10.0,
                    "senders_blocked": now.senders,
                    "receivers_blocked": now.receivers,
                    "make_site": tracked.made_at.map(|pc| sym.caller_frame(pc.wrapping_sub(target.load_bias))),
                    "consumer_site": tracked.consumer.as_ref().and_then(|s| s.first()),
                    "looks": tracked.looks.len(),
                }),
                hint: "producers outpace the consumer of this channel: add consumers, make the producer back off or drop, or bound the work upstream; a bigger buffer only delays the backlog".into(),
            });
        }
        out
    }
}
