//! Go's heap sampler, `runtime.MemProfileRate`: turned on when the program has it off, and
//! given back as it was found whatever way the session ends — also when several gotrace
//! sessions watch the same program (the ledger says what the program had before any of them)
//! and when the program changes the rate itself meanwhile (then it is the program's, and
//! gotrace follows it rather than fighting it).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::ledger::{Holder, Ledger, ProcessId, Record};
use crate::{
    error::{Error, Result},
    goruntime::{
        heapprof::{HeapReader, DEFAULT_RATE},
        Runtime,
    },
    target::{ProcessMemory, Target},
};

/// What the sampler guard needs from the options.
#[derive(Clone, Copy, Debug, Default)]
pub struct SamplerRequest {
    /// `runtime.MemProfileRate` to set (`None`: Go's default, 512 KiB, if the sampler is off).
    pub rate: Option<u64>,
    /// Never write into the target.
    pub read_only: bool,
}

/// What gotrace did to the target's sampler, as reported in report.json.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    /// The program's own `runtime.MemProfileRate`, before gotrace touched it (0: sampler off,
    /// the usual case when nothing in the program links the heap-profile reader). When another
    /// gotrace session had already changed it, this is still the program's own value.
    pub rate_at_attach: u64,
    /// The rate while traced.
    pub rate: u64,
    /// gotrace (this session or another) set `rate`; the last session to leave restores
    /// `rate_at_attach`.
    pub set_by_gotrace: bool,
    /// Other gotrace sessions attached to the same program when this one attached.
    pub other_sessions: usize,
}

/// How the session left the sampler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handover {
    /// gotrace changed nothing (read-only, or the rate was already as wanted and nobody else
    /// needs it changed).
    Untouched,
    /// The program's own rate was put back.
    Restored(u64),
    /// Left on at this rate for other gotrace sessions still attached (the last restores).
    KeptFor { sessions: usize, rate: u64 },
    /// The program set its own rate while traced: left as the program set it.
    ProgramOwn(u64),
    /// The process exited or exec'd: nothing to give back.
    Gone,
}

/// The identity the ledger keeps of this session and its target.
struct Ids {
    me: Holder,
    program: ProcessId,
    image: u64,
}

/// Restores `runtime.MemProfileRate` when dropped. Being a guard, every way out of a session —
/// an error while placing probes, a panic, the normal end — passes through it.
pub struct SamplerGuard {
    reader: Option<HeapReader>,
    memory: ProcessMemory,
    state: Option<SamplerState>,
    /// The rate seen at the last read, to follow a program that sets its own.
    last_rate: AtomicU64,
    ids: Option<Ids>,
    read_only: bool,
    unavailable: Option<String>,
    handover: Option<Handover>,
}

impl SamplerGuard {
    pub(super) fn enable(
        target: &Target,
        runtime: &Runtime,
        request: SamplerRequest,
    ) -> Result<Self> {
        let mut guard = SamplerGuard {
            reader: HeapReader::new(target, runtime),
            memory: target.memory.clone(),
            state: None,
            last_rate: AtomicU64::new(0),
            ids: None,
            read_only: request.read_only,
            unavailable: None,
            handover: None,
        };
        let Some(reader) = &guard.reader else {
            guard.unavailable =
                Some("the heap profile variables were not found in this binary".into());
            return Ok(guard);
        };
        let who = match (ProcessId::myself(), ProcessId::with_image(target.pid)) {
            (Ok(me), Ok((program, image))) => Some((me, program, image)),
            _ => None,
        };
        let ledger = ledger_or_warn();
        let current = reader.rate(&guard.memory)?;
        // A record whose last write is no longer in the target is void: the program has set
        // its own rate since.
        let mut record = match (&ledger, who) {
            (Some(l), Some((_, program, image))) => {
                l.read(program, image).filter(|r| r.written == current)
            }
            _ => None,
        };
        let others = record.as_mut().map_or(0, |r| r.live_holders().len());
        let original = record.as_ref().map_or(current, |r| r.original);
        let rate = match (request.read_only, request.rate) {
            (true, _) => current,
            (false, Some(r)) => r,
            (false, None) if current == 0 => DEFAULT_RATE,
            (false, None) => current,
        };
        if rate != current {
            reader.set_rate(&guard.memory, rate)?;
        }
        let ids = who.map(|(me, program, image)| Ids {
            me: Holder::new(me, rate),
            program,
            image,
        });
        if let (false, Some(ledger), Some(ids)) = (request.read_only, &ledger, &ids) {
            let mut holders = record.map(|r| r.holders).unwrap_or_default();
            holders.push(ids.me.clone());
            let record = Record {
                program: ids.program,
                image: ids.image,
                original,
                written: rate,
                holders,
            };
            if let Err(e) = ledger.write(&record) {
                log::warn!("recording the sampler for other sessions: {e}");
            }
        }
        if rate == 0 {
            guard.unavailable = Some("the program's heap sampler is off (MemProfileRate = 0) and --read-only forbids turning it on".into());
        }
        guard.state = Some(SamplerState {
            rate_at_attach: original,
            rate,
            set_by_gotrace: rate != original,
            other_sessions: others,
        });
        guard.last_rate.store(rate, Ordering::Relaxed);
        guard.ids = ids;
        Ok(guard)
    }

    /// What gotrace did to the sampler (`None`: not found in this binary).
    pub fn state(&self) -> Option<&SamplerState> {
        self.state.as_ref()
    }

    /// Why there is no heap profile, when there is none.
    pub fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// The heap profile reader and the rate to scale its samples by, when there is one: the
    /// rate in the target now, as Go's own profile scales by the `MemProfileRate` current
    /// when it is written (runtime/pprof, Go 1.19 to 1.27). A program that turns sampling off
    /// keeps the samples it took at the last rate.
    pub(crate) fn profile_reader(&self) -> Option<(&HeapReader, u64)> {
        let reader = self.reader.as_ref()?;
        self.state.as_ref()?;
        let before = self.last_rate.load(Ordering::Relaxed);
        let now = reader.rate(&self.memory).unwrap_or(before);
        if now != before && now != 0 {
            log::warn!(
                "runtime.MemProfileRate changed from {before} to {now} while traced (by the program or another gotrace session): the heap profile is scaled by {now} from now on, as Go's own profile is"
            );
            self.last_rate.store(now, Ordering::Relaxed);
        }
        let rate = self.last_rate.load(Ordering::Relaxed);
        (rate != 0).then_some((reader, rate))
    }

    /// How the sampler was left (`None` while attached, or when there is none).
    pub fn handover(&self) -> Option<Handover> {
        self.handover
    }

    /// Puts the rate back now (idempotent), unless another session still needs it on: then
    /// the rate it asked for stays.
    pub fn restore(&mut self) {
        let (Some(reader), Some(state)) = (&self.reader, &self.state) else {
            return;
        };
        if self.handover.is_some() {
            return;
        }
        let handover = self.give_back(reader, state).unwrap_or_else(|e| {
            match e {
                Error::Replaced { .. } => log::info!("{e}"),
                // A process that has exited has nothing to restore.
                _ if !self.memory.same_program() => {}
                e => log::warn!("could not restore MemProfileRate: {e}"),
            }
            Handover::Gone
        });
        self.handover = Some(handover);
    }

    fn give_back(&self, reader: &HeapReader, state: &SamplerState) -> Result<Handover> {
        if self.read_only {
            return Ok(Handover::Untouched);
        }
        let current = reader.rate(&self.memory)?;
        let ledger = self.ids.as_ref().and_then(|_| ledger_or_warn());
        let found = match (&ledger, &self.ids) {
            (Some(l), Some(ids)) => l.read(ids.program, ids.image).map(|r| (l, ids, r)),
            _ => None,
        };
        let Some((ledger, ids, mut record)) = found else {
            // No ledger: what this session alone knows.
            return Ok(if !state.set_by_gotrace {
                Handover::Untouched
            } else if current == state.rate {
                reader.set_rate(&self.memory, state.rate_at_attach)?;
                Handover::Restored(state.rate_at_attach)
            } else {
                Handover::ProgramOwn(current)
            });
        };
        record.holders.retain(|h| *h != ids.me);
        let next = record.live_holders().last().map(|h| h.rate);
        let handover = if current != record.written {
            // The program set its own rate since: it is the program's now.
            record.original = current;
            record.written = current;
            Handover::ProgramOwn(current)
        } else {
            let rate = next.unwrap_or(record.original);
            if rate != current {
                reader.set_rate(&self.memory, rate)?;
                record.written = rate;
            }
            match next {
                Some(rate) => Handover::KeptFor {
                    sessions: record.holders.len(),
                    rate,
                },
                None if rate != current => Handover::Restored(rate),
                None => Handover::Untouched,
            }
        };
        if record.holders.is_empty() {
            ledger.remove(record.program);
        } else {
            ledger.write(&record)?;
        }
        Ok(handover)
    }
}

fn ledger_or_warn() -> Option<Ledger> {
    Ledger::lock()
        .map_err(|e| {
            log::warn!("gotrace sessions cannot see each other's changes to MemProfileRate: {e}")
        })
        .ok()
}

impl Drop for SamplerGuard {
    fn drop(&mut self) {
        self.restore();
    }
}
