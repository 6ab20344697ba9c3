//! The second stage: reading the target's runtime, tick after tick, into [`Look`]s. The
//! observer owns every reader of process memory and the read budget; what it returns is plain
//! data for the model and the detectors.

pub mod look;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Instant, SystemTime},
};

pub use look::{census, CStackLook, ChannelLook, Classifier, GoroutineLook, Look, LookedG};

use crate::{
    attach::Attachment,
    goruntime::{
        allgs::{AllGs, Census, GSnapshot},
        channels::ChannelReader,
        finalizers::{is_finalizer_goroutine, FinalizerQueue},
        gcstats::GcReader,
        pools::PoolReader,
        sched::GoidCounter,
        specials::SpecialsReader,
        traceback::{Tracebacks, G_LEAKED, G_RUNNING, G_WAITING},
    },
    symbols::{native::NativeSymbols, Frame},
    util::FastMap,
};

/// The share of one CPU gotrace allows itself for its heavier reads of the target's memory
/// (every goroutine, the heap's specials): the CPU they use is one the target wants too.
pub const READ_BUDGET: f64 = 0.05;

/// Channels followed at once; a channel empty with nobody waiting for this many looks is
/// dropped.
const MAX_CHANNELS: usize = 10_000;
const IDLE_LOOKS: usize = 30;

/// C allocation stacks whose frames are remembered.
const MAX_C_STACKS: usize = 4096;

/// Readers of the runtime's state in memory; each is `None` when this binary does not let
/// gotrace find what it needs.
struct Readers {
    allgs: Option<AllGs>,
    gc: Option<GcReader>,
    specials: Option<SpecialsReader>,
    goids: Option<GoidCounter>,
    finq: Option<FinalizerQueue>,
    channels: Option<ChannelReader>,
    pools: Option<PoolReader>,
}

/// Stacks (link-time return PCs, innermost first) of the user goroutines, with their counts.
pub type GoroutineProfile = Vec<(Vec<u64>, u64)>;

pub struct Observer {
    readers: Readers,
    tracebacks: Tracebacks,
    started_wall: SystemTime,
    /// Channels followed: how many looks each has been idle, and its capacity when first read.
    channels: HashMap<u64, (usize, Option<u64>)>,
    classifier: Classifier,
    /// When the next walk of every goroutine, and of the heap's specials, may start.
    next_census: Option<Instant>,
    next_specials: Option<Instant>,
    last_cycle: Option<u32>,
    heap_read: bool,
    native: Option<NativeSymbols>,
    c_frames: lru::LruCache<i64, Arc<[Frame]>>,
}

/// What a look must read whatever the budget says (the last look of a session).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    Spaced,
    Final,
}

impl Observer {
    pub fn new(att: &Attachment, started_wall: SystemTime) -> Self {
        let (target, runtime) = (&att.target, &att.runtime);
        Observer {
            readers: Readers {
                allgs: AllGs::new(target, runtime),
                gc: GcReader::new(target, runtime),
                specials: SpecialsReader::new(target, runtime),
                goids: GoidCounter::new(target, runtime),
                finq: FinalizerQueue::new(target, runtime),
                channels: ChannelReader::new(runtime),
                pools: PoolReader::new(target, runtime),
            },
            tracebacks: Tracebacks::new(target, runtime),
            started_wall,
            channels: HashMap::new(),
            classifier: Classifier::default(),
            next_census: None,
            next_specials: None,
            last_cycle: None,
            heap_read: false,
            native: None,
            c_frames: lru::LruCache::new(std::num::NonZeroUsize::new(MAX_C_STACKS).unwrap()),
        }
    }

    /// A quick count of the goroutines (at attach).
    pub fn census(&self, att: &Attachment) -> Option<Census> {
        Some(census(&self.goroutines(att, None)?.0))
    }

    /// The gs of `allgs` read before `until`, classified, and whether that was all of them.
    fn goroutines(&self, att: &Attachment, until: Option<Instant>) -> Option<(Vec<LookedG>, bool)> {
        let (snapshot, complete) = self
            .readers
            .allgs
            .as_ref()?
            .snapshot_until(&att.target, until)
            .ok()?;
        Some((
            self.classifier
                .classify(att.target.binary.pclntab(), snapshot),
            complete,
        ))
    }

    /// Every goroutine as the runtime lists them now, and the unwinder of their stacks (for a
    /// goroutine dump of a running session).
    pub(crate) fn all_goroutines(&self, att: &Attachment) -> Option<(Vec<GSnapshot>, &Tracebacks)> {
        let gs = self.readers.allgs.as_ref()?.snapshot(&att.target).ok()?;
        Some((gs, &self.tracebacks))
    }

    pub fn goids_created(&self, att: &Attachment) -> Option<u64> {
        self.readers
            .goids
            .as_ref()
            .and_then(|g| g.created(&att.target).ok())
    }

    /// Reads what is due. `known_channels` are channels the probes saw (sends, makes), to
    /// follow besides those goroutines wait on. Read errors mean the target is exiting: the
    /// parts that failed are left out.
    pub fn look(
        &mut self,
        att: &Attachment,
        t: f64,
        known_channels: &[u64],
        budget: Budget,
        until: Option<Instant>,
    ) -> Look {
        let mut look = Look {
            t,
            ..Look::default()
        };
        if !att.target.is_alive() {
            return look;
        }
        look.c_stacks = self.c_stacks(att);
        let census_due =
            budget == Budget::Final || self.next_census.is_none_or(|next| Instant::now() >= next);
        if census_due && self.readers.allgs.is_some() {
            let begin = Instant::now();
            self.read_goroutines(att, known_channels, &mut look, until);
            // A program with a million goroutines takes a while to read: keep within budget.
            self.next_census = Some(Instant::now() + begin.elapsed().div_f64(READ_BUDGET));
        }
        look.goids_created = self.goids_created(att);
        let Some(gc) = self
            .readers
            .gc
            .as_ref()
            .and_then(|r| r.read(&att.target).ok())
        else {
            return look;
        };
        look.gc = Some(gc);
        let new_cycle = self.last_cycle != Some(gc.cycles);
        self.last_cycle = Some(gc.cycles);
        if new_cycle || !self.heap_read || budget == Budget::Final {
            if let Some((reader, rate)) = att.sampler().profile_reader() {
                match reader.read(&att.target, rate, self.started_wall) {
                    Ok(p) => {
                        look.heap = Some(p);
                        self.heap_read = true;
                    }
                    Err(e) => log::debug!("reading the heap profile: {e}"),
                }
            }
            if new_cycle || budget == Budget::Final {
                look.specials = self.scan_specials(att, gc.cycles);
            }
        }
        look
    }

    fn read_goroutines(
        &mut self,
        att: &Attachment,
        known_channels: &[u64],
        look: &mut Look,
        until: Option<Instant>,
    ) {
        let target = &att.target;
        let Some((gs, complete)) = self.goroutines(att, until) else {
            return;
        };
        // What follows (channels, stacks, the model) costs as much again: not begun late.
        if !complete || until.is_some_and(|t| Instant::now() >= t) {
            log::warn!(
                "the walk of every goroutine was cut short by the deadline after {} goroutines",
                gs.len()
            );
            look.cut_short = true;
            return;
        }
        let census = census(&gs);
        let mut wait_reasons: HashMap<u8, String> = HashMap::new();
        let mut seen = [false; 256];
        for g in gs
            .iter()
            .filter(|g| g.g.is_live() && g.g.status == G_WAITING)
        {
            if !std::mem::replace(&mut seen[usize::from(g.g.waitreason)], true) {
                wait_reasons.insert(
                    g.g.waitreason,
                    self.tracebacks
                        .wait_reason(target, g.g.waitreason)
                        .unwrap_or_default(),
                );
            }
        }
        // Goroutines blocked on channels, and the channels they wait on.
        let mut on_channel = [false; 256];
        for (code, r) in &wait_reasons {
            on_channel[usize::from(*code)] =
                r.starts_with("chan send") || r.starts_with("chan receive") || r == "select";
        }
        let on_channels: Vec<&GSnapshot> = gs
            .iter()
            .map(|g| &g.g)
            .filter(|g| g.status == G_WAITING && on_channel[usize::from(g.waitreason)])
            .collect();
        let mut wanted: Vec<&GSnapshot> = Vec::new();
        // Waiters of the followed channels (a few), found among the blocked (maybe a million).
        let mut waiters: Vec<u64> = Vec::new();
        if let Some(reader) = &self.readers.channels {
            let blocked_on = reader.blocked_on(target, &on_channels);
            for addr in blocked_on.into_iter().chain(known_channels.iter().copied()) {
                if self.channels.len() < MAX_CHANNELS {
                    self.channels.entry(addr).or_insert((0, None));
                }
            }
            let mut channels = Vec::with_capacity(self.channels.len());
            self.channels.retain(|addr, (idle, cap)| {
                let Ok(state) = reader.state(target, *addr) else {
                    return false;
                };
                // Only a buffer can back up; and a channel the program dropped is freed and
                // its memory reused (a `time.After` per request): once what is read there
                // stops being the same channel — another capacity, more elements than room —
                // it is no longer followed.
                if state.cap == 0 || state.len > state.cap || cap.is_some_and(|c| c != state.cap) {
                    return false;
                }
                *cap = Some(state.cap);
                let is_idle = state.len == 0 && state.senders == 0 && state.receivers == 0;
                *idle = if is_idle { *idle + 1 } else { 0 };
                waiters.extend([state.a_sender, state.a_receiver].into_iter().flatten());
                channels.push(ChannelLook { addr: *addr, state });
                *idle < IDLE_LOOKS && !state.closed
            });
            let waiters: std::collections::HashSet<u64> = waiters.into_iter().collect();
            wanted.extend(on_channels.iter().filter(|g| waiters.contains(&g.addr)));
            log::debug!("following {} channels", channels.len());
            look.channels = Some(channels);
        }
        // One blocked goroutine per `go` statement: the one waiting longest.
        let mut per_site: FastMap<u64, &GSnapshot> = FastMap::default();
        for g in gs.iter().filter(|g| g.is_user()) {
            if g.g.status != G_WAITING && g.g.status != G_LEAKED {
                continue;
            }
            per_site
                .entry(g.g.gopc)
                .and_modify(|s| {
                    if g.g.waitsince != 0 && (s.waitsince == 0 || g.g.waitsince < s.waitsince) {
                        *s = &g.g;
                    }
                })
                .or_insert(&g.g);
        }
        wanted.extend(per_site.into_values());
        if let Some(fing) = gs
            .iter()
            .find(|g| g.g.is_live() && is_finalizer_goroutine(&g.start_function))
        {
            if fing.g.status != G_RUNNING {
                wanted.push(&fing.g);
            }
        }
        wanted.sort_by_key(|g| g.addr);
        wanted.dedup_by_key(|g| g.addr);
        let stacks = match self.tracebacks.unwind(target, &wanted) {
            Ok(stacks) => wanted.iter().map(|g| g.addr).zip(stacks).collect(),
            Err(_) => HashMap::new(),
        };
        look.finalizer_queue = self.readers.finq.as_ref().and_then(|q| q.len(target).ok());
        look.pools = self
            .readers
            .pools
            .as_ref()
            .and_then(|r| r.read(target).ok());
        look.goroutines = Some(GoroutineLook {
            census,
            gs,
            wait_reasons,
            stacks,
        });
    }

    /// Walks the heap's specials for object ages and pending finalizers. On a heap with
    /// millions of specials (every object with a finalizer has one) a walk takes a while:
    /// walks are spaced to stay within [`READ_BUDGET`].
    fn scan_specials(
        &mut self,
        att: &Attachment,
        cycle: u32,
    ) -> Option<(u32, crate::goruntime::specials::SpecialsScan)> {
        let r = self.readers.specials.as_ref()?;
        if self.next_specials.is_some_and(|next| Instant::now() < next) {
            return None;
        }
        let begin = Instant::now();
        let scan = match r.scan(&att.target) {
            Ok(scan) => Some((cycle, scan)),
            Err(e) => {
                log::debug!("walking the heap specials: {e}");
                None
            }
        };
        self.next_specials = Some(Instant::now() + begin.elapsed().div_f64(READ_BUDGET));
        scan
    }

    /// Outstanding C bytes per allocation stack, from the kernel side's per-CPU counters.
    fn c_stacks(&mut self, att: &Attachment) -> Option<Vec<CStackLook>> {
        let maps = att.maps()?;
        if !att
            .enabled_probes()
            .any(|p| p.kind == tracer_common::ProbeKind::CMalloc)
        {
            return None;
        }
        let totals: Vec<(i64, i64, i64)> = maps
            .c_stacks
            .iter()
            .filter_map(|r| r.ok())
            .map(|(stack, per_cpu)| {
                let (b, n) = per_cpu.iter().fold((0u64, 0u64), |(b, n), c| {
                    (b.wrapping_add(c.bytes), n.wrapping_add(c.blocks))
                });
                (stack, b as i64, n as i64)
            })
            .collect();
        let native = self
            .native
            .get_or_insert_with(|| NativeSymbols::new(&att.target));
        let mut out = Vec::with_capacity(totals.len());
        for (stack_id, bytes, blocks) in totals {
            let frames = match self.c_frames.get(&stack_id) {
                Some(f) => f.clone(),
                None => {
                    let Ok(trace) = maps.stacks.get(&(stack_id as u32), 0) else {
                        continue;
                    };
                    let frames: Arc<[Frame]> = trace
                        .frames()
                        .iter()
                        .flat_map(|f| native.frames(&att.target, &att.symbols, f.ip))
                        .collect();
                    self.c_frames.put(stack_id, frames.clone());
                    frames
                }
            };
            out.push(CStackLook {
                stack_id,
                bytes,
                blocks,
                frames,
            });
        }
        Some(out)
    }

    /// Every user goroutine's stack (link-time return PCs) with how many goroutines share it:
    /// Go's goroutine profile, read while the target runs.
    /// Read before `until` (`None` when that was not enough for all of them: a part would
    /// misstate the shares).
    pub fn goroutine_profile(
        &self,
        att: &Attachment,
        until: Option<Instant>,
    ) -> Option<GoroutineProfile> {
        if !att.target.is_alive() {
            return None;
        }
        let (gs, complete) = self.goroutines(att, until)?;
        if !complete {
            log::warn!("the goroutine profile was cut short by the deadline");
            return None;
        }
        let user: Vec<&GSnapshot> = gs.iter().filter(|g| g.is_user()).map(|g| &g.g).collect();
        // A chunk at a time: a million goroutines never have their stacks in memory at once.
        let mut counts: HashMap<Vec<u64>, u64> = HashMap::new();
        for chunk in user.chunks(4096) {
            if until.is_some_and(|t| Instant::now() >= t) {
                log::warn!("the goroutine profile was cut short by the deadline");
                return None;
            }
            for s in self.tracebacks.unwind(&att.target, chunk).ok()? {
                *counts.entry(s).or_default() += 1;
            }
        }
        let mut v: Vec<_> = counts.into_iter().collect();
        v.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        Some(v)
    }
}
