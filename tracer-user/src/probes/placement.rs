//! Where to put a uprobe inside a Go function, found by decoding its machine code.
//!
//! * Entry probes go *after* the stack-check prologue. A Go function starts with
//!   `CMPQ SP, 16(R14); JLS morestack` (or `LEAQ -n(SP), R12; CMPQ R12, 16(R14); JLS` for large
//!   frames); when the check fails the function calls `morestack` and restarts at its entry, so
//!   a probe on the first instruction fires twice for one call. After the `JLS` it fires once,
//!   and the argument registers still hold the arguments.
//! * "Return" probes go on every `RET` of the function. uretprobes are never used on Go code:
//!   the kernel replaces the return address on the goroutine stack, which the Go runtime later
//!   copies or unwinds ("unexpected return pc" crashes).

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind, Register,
};

/// `g.stackguard0` is at offset 16 in every supported release (1.19–1.27).
const STACKGUARD0: u64 = 16;
/// The stack check is always among the first few instructions.
const PROLOGUE_SCAN: usize = 6;

/// Address of the first instruction after the stack-check prologue of the function whose code
/// starts at `entry`. Functions without a check (`//go:nosplit`) are probed at their entry.
pub fn after_prologue(code: &[u8], entry: u64) -> u64 {
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut seen_check = false;
    let mut insn = Instruction::default();
    for _ in 0..PROLOGUE_SCAN {
        if !decoder.can_decode() {
            break;
        }
        decoder.decode_out(&mut insn);
        if insn.is_invalid() {
            break;
        }
        if seen_check {
            if insn.flow_control() == FlowControl::ConditionalBranch {
                return insn.next_ip();
            }
            break;
        }
        seen_check = is_stackguard_compare(&insn);
    }
    entry
}

/// `CMP reg, [R14+16]` / `CMP [R14+16], reg`: comparing against `g.stackguard0`.
fn is_stackguard_compare(insn: &Instruction) -> bool {
    insn.mnemonic() == Mnemonic::Cmp
        && (0..insn.op_count()).any(|i| {
            insn.op_kind(i) == OpKind::Memory
                && insn.memory_base() == Register::R14
                && insn.memory_index() == Register::None
                && insn.memory_displacement64() == STACKGUARD0
        })
}

/// Addresses of all `RET` instructions in the function.
pub fn ret_sites(code: &[u8], entry: u64) -> Vec<u64> {
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    let mut rets = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        if matches!(insn.code(), Code::Retnq | Code::Retnq_imm16) {
            rets.push(insn.ip());
        }
    }
    rets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_frame_prologue() {
        // CMPQ SP, 0x10(R14); JBE +0x20; PUSHQ BP
        let code = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x20, 0x55];
        assert_eq!(after_prologue(&code, 0x1000), 0x1006);
    }

    #[test]
    fn large_frame_prologue() {
        // LEAQ -0x88(SP), R12; CMPQ R12, 0x10(R14); JBE rel32; PUSHQ BP
        let code = [
            0x4c, 0x8d, 0xa4, 0x24, 0x78, 0xff, 0xff, 0xff, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86,
            0x00, 0x01, 0x00, 0x00, 0x55,
        ];
        assert_eq!(after_prologue(&code, 0x2000), 0x2000 + 18);
    }

    #[test]
    fn nosplit_function_is_probed_at_entry() {
        // PUSHQ BP; MOVQ SP, BP; RET
        let code = [0x55, 0x48, 0x89, 0xe5, 0xc3];
        assert_eq!(after_prologue(&code, 0x3000), 0x3000);
        assert_eq!(ret_sites(&code, 0x3000), vec![0x3004]);
    }
}
