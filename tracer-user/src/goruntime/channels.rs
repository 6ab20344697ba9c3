//! Channels read from outside. gotrace learns a channel's address when a goroutine blocks on it
//! (its `g.waiting` list of sudogs names the channels of a send, receive or select) or from
//! the `--chan-sends` probe, then reads the channel's buffer fill and wait queues every tick.

use super::{allgs::GSnapshot, Field, Runtime};
use crate::{binary::GoVersion, error::Result, target::Target, util::read_u64};

/// Longest sudog list followed (a wait queue of a channel, a select's cases).
const MAX_SUDOGS: usize = 100_000;

/// A channel's state at one look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChanState {
    pub len: u64,
    pub cap: u64,
    pub closed: bool,
    /// Where the next receive takes its element from (`recvx`): it moves with every receive
    /// from the buffer, so a buffer whose `recvx` stays put is not being drained.
    pub recvx: u64,
    /// Goroutines blocked sending to / receiving from it.
    pub senders: u64,
    pub receivers: u64,
    /// One blocked sender's and one blocked receiver's g (to show where producers and
    /// consumers wait).
    pub a_sender: Option<u64>,
    pub a_receiver: Option<u64>,
}

pub struct ChannelReader {
    g_waiting: u64,
    sudog_g: u64,
    sudog_next: u64,
    sudog_waitlink: u64,
    sudog_c: u64,
    qcount: u64,
    dataqsiz: u64,
    closed: u64,
    recvx: u64,
    recvq: u64,
    sendq: u64,
    waitq_first: u64,
}

impl ChannelReader {
    pub fn new(runtime: &Runtime) -> Option<Self> {
        let o = |f| runtime.offsets.get(f);
        // Go 1.26 made sudog.c a maybeTraceableChan {vp, vu}: the GC-hidden uintptr `vu` is the
        // one always set.
        let c_word = if runtime.version >= GoVersion::new(1, 26, 0) {
            8
        } else {
            0
        };
        Some(ChannelReader {
            g_waiting: o(Field::GWaiting)?,
            sudog_g: o(Field::SudogG)?,
            sudog_next: o(Field::SudogNext)?,
            sudog_waitlink: o(Field::SudogWaitlink)?,
            sudog_c: o(Field::SudogC)? + c_word,
            qcount: o(Field::HchanQcount)?,
            dataqsiz: o(Field::HchanDataqsiz)?,
            closed: o(Field::HchanClosed)?,
            recvx: o(Field::HchanRecvx)?,
            recvq: o(Field::HchanRecvq)?,
            sendq: o(Field::HchanSendq)?,
            waitq_first: o(Field::WaitqFirst)?,
        })
    }

    /// Channels the given blocked goroutines wait on (a select waits on several).
    pub fn blocked_on(&self, target: &Target, gs: &[&GSnapshot]) -> Vec<u64> {
        // A level of sudogs at a time, each level in batched reads: a million blocked
        // goroutines cost a few thousand system calls, not three million.
        let mem = &target.memory;
        let word = |b: &[u8], o: u64| read_u64(b, o as usize).unwrap_or(0);
        let waiting: Vec<u64> = gs.iter().map(|g| g.addr + self.g_waiting).collect();
        let Ok(firsts) = mem.read_many(&waiting, 8) else {
            return Vec::new();
        };
        let mut level: Vec<u64> = firsts
            .iter()
            .map(|b| word(b, 0))
            .filter(|&sg| sg != 0)
            .collect();
        let lo = self.sudog_c.min(self.sudog_waitlink);
        let span = (self.sudog_c.max(self.sudog_waitlink) - lo + 8) as usize;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for _ in 0..64 {
            if level.is_empty() {
                break;
            }
            let at: Vec<u64> = level.iter().map(|sg| sg + lo).collect();
            let Ok(sudogs) = mem.read_many(&at, span) else {
                break;
            };
            level.clear();
            for b in &sudogs {
                let c = word(b, self.sudog_c - lo);
                if c != 0 && seen.insert(c) {
                    out.push(c);
                }
                let next = word(b, self.sudog_waitlink - lo);
                if next != 0 {
                    level.push(next);
                }
            }
        }
        out
    }

    /// The state of the channel at `addr`.
    pub fn state(&self, target: &Target, addr: u64) -> Result<ChanState> {
        let mem = &target.memory;
        let span = [
            self.qcount,
            self.dataqsiz,
            self.closed,
            self.recvx,
            self.recvq,
            self.sendq,
        ]
        .into_iter()
        .max()
        .unwrap()
            + self.waitq_first
            + 8;
        let h = mem.read_vec(addr, span as usize)?;
        let w = |o: u64| read_u64(&h, o as usize).unwrap_or(0);
        let (senders, a_sender) = self.queue(target, w(self.sendq + self.waitq_first));
        let (receivers, a_receiver) = self.queue(target, w(self.recvq + self.waitq_first));
        Ok(ChanState {
            len: w(self.qcount),
            cap: w(self.dataqsiz),
            closed: (w(self.closed) & 0xffff_ffff) != 0,
            recvx: w(self.recvx),
            senders,
            receivers,
            a_sender,
            a_receiver,
        })
    }

    /// Length of a wait queue and its first goroutine.
    fn queue(&self, target: &Target, first: u64) -> (u64, Option<u64>) {
        let mem = &target.memory;
        let g = (first != 0)
            .then(|| mem.read_u64(first + self.sudog_g).ok())
            .flatten();
        let mut n = 0;
        let mut sg = first;
        while sg != 0 && n < MAX_SUDOGS as u64 {
            n += 1;
            sg = mem.read_u64(sg + self.sudog_next).unwrap_or(0);
        }
        (n, g)
    }
}
