//! Stacks of goroutines that are not running, read from outside while the program runs: the
//! unwinder Go itself uses (`g.sched` gives the PC and SP where the goroutine stopped; each
//! function's `pcsp` table gives its frame size, hence where its return address is), and the
//! names of goroutine states and wait reasons as the runtime prints them.

use std::collections::HashMap;

use super::{allgs::GSnapshot, datasyms::DataSymbol, Runtime};
use crate::{error::Result, target::Target};

/// Frames gotrace follows per goroutine (Go's own traceback prints up to 100).
pub const MAX_FRAMES: usize = 100;

/// `runtime.gStatusStrings` (runtime/traceback.go), by status value; 10 (`_Gleaked`) exists
/// with the goroutine leak detector (Go 1.26 experiment, default in 1.27).
pub fn status_name(status: u32) -> &'static str {
    match status {
        0 => "idle",
        1 => "runnable",
        2 => "running",
        3 => "syscall",
        4 => "waiting",
        6 => "dead",
        8 => "copystack",
        9 => "preempted",
        10 => "leaked",
        _ => "???",
    }
}

pub const G_RUNNING: u32 = 2;
pub const G_SYSCALL: u32 = 3;
pub const G_WAITING: u32 = 4;
pub const G_LEAKED: u32 = 10;

/// Unwinds goroutine stacks and names their wait reasons.
pub struct Tracebacks {
    wait_reasons: Option<u64>,
    load_bias: u64,
    goexit: Option<u64>,
    names: std::cell::RefCell<HashMap<u8, String>>,
}

impl Tracebacks {
    pub fn new(target: &Target, runtime: &Runtime) -> Self {
        Tracebacks {
            wait_reasons: runtime.variable(target, DataSymbol::WaitReasonStrings),
            load_bias: target.load_bias,
            goexit: target
                .binary
                .pclntab()
                .find("runtime.goexit")
                .map(|f| f.entry),
            names: Default::default(),
        }
    }

    /// The runtime's text for a wait reason (`waitReasonStrings[w]`), e.g. "chan receive".
    pub fn wait_reason(&self, target: &Target, w: u8) -> Option<String> {
        if let Some(s) = self.names.borrow().get(&w) {
            return Some(s.clone());
        }
        let table = self.wait_reasons?;
        let mem = &target.memory;
        let ptr = mem.read_u64(table + u64::from(w) * 16).ok()?;
        let len = mem.read_u64(table + u64::from(w) * 16 + 8).ok()?;
        if len > 128 {
            return None;
        }
        let bytes = mem.read_vec(ptr, len as usize).ok()?;
        let s = String::from_utf8(bytes).ok()?;
        self.names.borrow_mut().insert(w, s.clone());
        Some(s)
    }

    /// Stacks of the given goroutines as link-time PCs, innermost first. The first PC is where
    /// the goroutine stopped (a return address into `gopark` or similar); all are return
    /// addresses, to be symbolized at `pc - 1`. Running goroutines get an empty stack: their
    /// saved state is stale, and reading a live stack without stopping them would be a guess.
    pub fn unwind(&self, target: &Target, gs: &[&GSnapshot]) -> Result<Vec<Vec<u64>>> {
        let pcln = target.binary.pclntab();
        let mut stacks: Vec<Vec<u64>> = vec![Vec::new(); gs.len()];
        // (goroutine index, runtime pc, sp) of the frames still to walk.
        let mut frontier: Vec<(usize, u64, u64)> = gs
            .iter()
            .enumerate()
            .filter(|(_, g)| g.status != G_RUNNING && g.sched_pc != 0 && g.sched_sp != 0)
            .map(|(i, g)| (i, g.sched_pc, g.sched_sp))
            .collect();
        for _ in 0..MAX_FRAMES {
            if frontier.is_empty() {
                break;
            }
            // Where each frame's return address sits: sp + the frame size at pc.
            let mut slots = Vec::with_capacity(frontier.len());
            let mut walking = Vec::with_capacity(frontier.len());
            for &(i, pc, sp) in &frontier {
                let link = pc.wrapping_sub(self.load_bias);
                stacks[i].push(link);
                let Some(f) = pcln.func_index_for_pc(link.saturating_sub(1)) else {
                    continue;
                };
                if pcln.func(f).map(|f| f.entry) == self.goexit {
                    continue;
                }
                let Some(delta) = pcln.sp_delta(f, link) else {
                    continue;
                };
                let slot = sp + delta;
                if slot < gs[i].stack_lo || slot + 8 > gs[i].stack_hi {
                    continue;
                }
                slots.push(slot);
                walking.push((i, slot));
            }
            let rets = target.memory.read_many(&slots, 8)?;
            frontier = walking
                .into_iter()
                .zip(rets)
                .filter_map(|((i, slot), ret)| {
                    let ret = u64::from_le_bytes(ret.try_into().ok()?);
                    (ret != 0).then_some((i, ret, slot + 8))
                })
                .collect();
        }
        Ok(stacks)
    }
}

/// Go's `showframe` for tracebacks: runtime internals are hidden, the runtime's exported
/// functions (`runtime.Goexit`...) are shown.
pub fn show_frame(function: &str) -> bool {
    match function.strip_prefix("runtime.") {
        Some(rest) => rest.starts_with(|c: char| c.is_ascii_uppercase()),
        None => function.contains('.'),
    }
}

/// The function a goroutine runs, named as the user wrote it. From Go 1.22, `go f(x)` starts
/// the goroutine in a compiler-generated `gowrapN` closure that calls `f`: report `f`, the
/// first function the wrapper calls outside the runtime.
///
/// The main goroutine starts in `runtime.main`, which calls the program's `main.main` (where
/// Go's traceback ends); the goroutine of a C thread calling into Go has no start function.
pub fn goroutine_function(binary: &crate::binary::GoBinary, startpc: u64) -> String {
    if startpc == 0 {
        return crate::symbols::CGO_CALLBACK.to_string();
    }
    let pcln = binary.pclntab();
    let Some(f) = pcln.func_for_pc(startpc) else {
        return format!("{startpc:#x}");
    };
    if f.name == "runtime.main" {
        return "main.main".to_string();
    }
    let is_wrapper = f
        .name
        .rsplit_once(".gowrap")
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !is_wrapper {
        return f.name;
    }
    let Some(code) = binary.code(&f) else {
        return f.name;
    };
    let mut decoder = iced_x86::Decoder::with_ip(64, code, f.entry, iced_x86::DecoderOptions::NONE);
    let mut insn = iced_x86::Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        if insn.flow_control() != iced_x86::FlowControl::Call {
            continue;
        }
        if let Some(callee) = pcln.func_for_pc(insn.near_branch_target()) {
            if !callee.name.starts_with("runtime.") {
                return callee.name;
            }
        }
    }
    f.name
}
