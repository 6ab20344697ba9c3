//! gotrace's uprobe programs on the Go runtime (amd64).
//!
//! Go's register ABI (1.17+) passes integer arguments in RAX, RBX, RCX, RDI, RSI, R8.. and keeps
//! the current goroutine's `g` in R14, so these programs read raw registers instead of the C
//! argument helpers. Userspace places entry probes *after* the stack-check prologue (so a call
//! that grows its stack still fires once) and "return" probes on RET instructions: never a
//! uretprobe, whose rewritten return address breaks Go's stack copying and unwinding.
#![no_std]
#![no_main]

use aya_ebpf::programs::tracing::StackIdContext;
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{map, uprobe},
    maps::{PerCpuArray, RingBuf, StackTrace},
    programs::ProbeContext,
};
use tracer_common::{
    AllocSample, ChanSend, EventHeader, FinalizerSet, GoroutineCreated, GoroutineExited, Malloc,
    ProbeConfig, ProbeKind, EVENTS_RING_BYTES, PROBE_KINDS, STACKS_ENTRIES,
};

/// Filled in by userspace (`EbpfLoader::set_global`) with the target's struct offsets.
#[unsafe(no_mangle)]
static CONFIG: ProbeConfig = ProbeConfig {
    g_goid: 0,
    g_m: 0,
    m_curg: 0,
    g_gopc: 0,
    g_startpc: 0,
    hchan_qcount: 0,
    hchan_dataqsiz: 0,
};

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

/// Probe hits per [`ProbeKind`], counted even when the ring buffer is full.
#[map]
static HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(PROBE_KINDS as u32, 0);

/// Events dropped because the ring buffer was full, per [`ProbeKind`].
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(PROBE_KINDS as u32, 0);

#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(STACKS_ENTRIES, 0);

/// `BPF_F_USER_STACK`: walk the user stack (Go keeps frame pointers on amd64).
const BPF_F_USER_STACK: u64 = 1 << 8;

#[inline(always)]
fn config() -> ProbeConfig {
    // Volatile: the value is patched into .rodata at load time, so the compiler must not fold
    // the zero initialiser into the code.
    unsafe { core::ptr::read_volatile(&CONFIG) }
}

#[inline(always)]
fn read_u64(addr: u64) -> u64 {
    if addr == 0 {
        return 0;
    }
    unsafe { bpf_probe_read_user(addr as *const u64) }.unwrap_or(0)
}

#[inline(always)]
fn bump(map: &PerCpuArray<u64>, kind: ProbeKind) {
    if let Some(p) = map.get_ptr_mut(kind as u32) {
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn header(kind: ProbeKind, goid: u64) -> EventHeader {
    EventHeader {
        kind: kind as u64,
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        goid,
        tid: bpf_get_current_pid_tgid() & 0xffff_ffff,
    }
}

/// Counts the hit and sends `event`; a full ring buffer is counted, never blocks the target.
#[inline(always)]
fn emit<T: 'static>(kind: ProbeKind, event: T) {
    bump(&HITS, kind);
    match EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            entry.write(event);
            entry.submit(0);
        }
        None => bump(&LOST, kind),
    }
}

#[inline(always)]
fn regs(ctx: &ProbeContext) -> &aya_ebpf::bindings::pt_regs {
    unsafe { &*ctx.regs }
}

/// goid of the goroutine whose `g` is in R14.
#[inline(always)]
fn current_goid(ctx: &ProbeContext, cfg: &ProbeConfig) -> u64 {
    read_u64(regs(ctx).r14 + cfg.g_goid)
}

#[inline(always)]
fn user_stack(ctx: &ProbeContext) -> i64 {
    match ctx.get_stackid(&STACKS, BPF_F_USER_STACK) {
        Ok(id) => id,
        Err(e) => e as i64,
    }
}

/// At each RET of `runtime.newproc1`: RAX holds the new `*g`, fully initialised. newproc1 runs on
/// the system stack (R14 = g0), so the creating goroutine is `g0.m.curg`.
#[uprobe]
pub fn gotrace_newproc1_ret(ctx: ProbeContext) -> u32 {
    let cfg = config();
    let newg = regs(&ctx).rax;
    let curg = read_u64(read_u64(regs(&ctx).r14 + cfg.g_m) + cfg.m_curg);
    let parent_goid = if curg == 0 {
        0
    } else {
        read_u64(curg + cfg.g_goid)
    };
    emit(
        ProbeKind::GoroutineCreate,
        GoroutineCreated {
            header: header(ProbeKind::GoroutineCreate, read_u64(newg + cfg.g_goid)),
            parent_goid,
            gopc: read_u64(newg + cfg.g_gopc),
            startpc: read_u64(newg + cfg.g_startpc),
        },
    );
    0
}

/// `runtime.goexit1` runs on the exiting goroutine (R14), before it switches to g0.
#[uprobe]
pub fn gotrace_goexit1(ctx: ProbeContext) -> u32 {
    let cfg = config();
    let goid = current_goid(&ctx, &cfg);
    emit(
        ProbeKind::GoroutineExit,
        GoroutineExited {
            header: header(ProbeKind::GoroutineExit, goid),
        },
    );
    0
}

/// `runtime.chansend(c *hchan, ep unsafe.Pointer, block bool, callerpc uintptr)`: c in RAX.
#[uprobe]
pub fn gotrace_chansend(ctx: ProbeContext) -> u32 {
    let cfg = config();
    let r = regs(&ctx);
    let chan = r.rax;
    emit(
        ProbeKind::ChanSend,
        ChanSend {
            header: header(ProbeKind::ChanSend, current_goid(&ctx, &cfg)),
            chan,
            qcount: read_u64(chan + cfg.hchan_qcount),
            dataqsiz: read_u64(chan + cfg.hchan_dataqsiz),
            // The probe sits before the frame is set up, so [RSP] is the return address.
            caller_pc: read_u64(r.rsp),
        },
    );
    0
}

/// `runtime.SetFinalizer(obj any, finalizer any)`: obj = (RAX type, RBX data), finalizer =
/// (RCX type, RDI *funcval).
#[uprobe]
pub fn gotrace_setfinalizer(ctx: ProbeContext) -> u32 {
    let cfg = config();
    let r = regs(&ctx);
    emit(
        ProbeKind::SetFinalizer,
        FinalizerSet {
            header: header(ProbeKind::SetFinalizer, current_goid(&ctx, &cfg)),
            obj_type: r.rax,
            obj_addr: r.rbx,
            finalizer_pc: read_u64(r.rdi),
            caller_pc: read_u64(r.rsp),
        },
    );
    0
}

/// `runtime.profilealloc(mp *m, x unsafe.Pointer, size uintptr)`: Go's sampler chose x.
#[uprobe]
pub fn gotrace_profilealloc(ctx: ProbeContext) -> u32 {
    let cfg = config();
    let r = regs(&ctx);
    emit(
        ProbeKind::AllocSample,
        AllocSample {
            header: header(ProbeKind::AllocSample, current_goid(&ctx, &cfg)),
            addr: r.rbx,
            size: r.rcx,
            stack_id: user_stack(&ctx),
        },
    );
    0
}

/// `runtime.mallocgc(size uintptr, typ *_type, needzero bool)` and its size-class variants,
/// which share the first two arguments.
#[uprobe]
pub fn gotrace_mallocgc(ctx: ProbeContext) -> u32 {
    let cfg = config();
    let r = regs(&ctx);
    emit(
        ProbeKind::Malloc,
        Malloc {
            header: header(ProbeKind::Malloc, current_goid(&ctx, &cfg)),
            size: r.rax,
            typ: r.rbx,
            stack_id: user_stack(&ctx),
        },
    );
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
