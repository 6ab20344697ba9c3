//! Channels seen by the (opt-in) `chan-send` and `chan-make` probes.

use tracer_common::ChanSend;

use super::capped::Capped;

/// Channels followed at once: a program making a channel per request must not grow gotrace.
const MAX_SENT_TO: usize = 10_000;
const MAX_MADE: usize = 100_000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelStats {
    pub sends: u64,
    pub capacity: u64,
    /// Buffer length when the latest send began.
    pub last_len: u64,
    pub max_len: u64,
    /// Where the latest send came from: the return address into the function with the send
    /// statement (chansend's `callerpc`).
    pub last_caller: u64,
}

#[derive(Debug)]
pub struct Channels {
    pub by_address: Capped<u64, ChannelStats>,
    /// Buffered channels made while attached (`--chan-make`): address -> (return address into
    /// the `make`, capacity).
    pub made: Capped<u64, (u64, u64)>,
}

impl Default for Channels {
    fn default() -> Self {
        Channels {
            by_address: Capped::new(MAX_SENT_TO),
            made: Capped::new(MAX_MADE),
        }
    }
}

impl Channels {
    pub fn made(&mut self, e: &tracer_common::ChanMade) {
        // Unbuffered channels cannot back up: not worth following.
        if e.dataqsiz > 0 {
            self.made.insert(e.chan, (e.caller_pc, e.dataqsiz));
        }
    }

    pub fn send(&mut self, e: &ChanSend) {
        let c = self.by_address.entry(e.chan, ChannelStats::default);
        c.sends += 1;
        c.capacity = e.dataqsiz;
        c.last_len = e.qcount;
        c.max_len = c.max_len.max(e.qcount);
        c.last_caller = e.caller_pc;
    }
}
