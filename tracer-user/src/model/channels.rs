//! Channel sends seen by the (opt-in) `chan-send` probe.

use std::collections::HashMap;

use tracer_common::ChanSend;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelStats {
    pub sends: u64,
    pub capacity: u64,
    /// Buffer length when the latest send began.
    pub last_len: u64,
    pub max_len: u64,
    /// Where the latest send came from (return address in the caller of chansend).
    pub last_caller: u64,
}

#[derive(Debug, Default)]
pub struct Channels {
    pub by_address: HashMap<u64, ChannelStats>,
    /// Buffered channels made while attached (`--chan-make`): address -> (return address into
    /// the `make`, capacity).
    pub made: HashMap<u64, (u64, u64)>,
}

impl Channels {
    pub fn made(&mut self, e: &tracer_common::ChanMade) {
        // Unbuffered channels cannot back up: not worth following.
        // Bounded: a program making channels in a loop must not grow gotrace without limit.
        if e.dataqsiz > 0 && self.made.len() < 100_000 {
            self.made.insert(e.chan, (e.caller_pc, e.dataqsiz));
        }
    }

    pub fn send(&mut self, e: &ChanSend) {
        let c = self.by_address.entry(e.chan).or_default();
        c.sends += 1;
        c.capacity = e.dataqsiz;
        c.last_len = e.qcount;
        c.max_len = c.max_len.max(e.qcount);
        c.last_caller = e.caller_pc;
    }
}
