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
    macros::{map, uprobe, uretprobe},
    maps::{HashMap, PerCpuArray, PerCpuHashMap, RingBuf, StackTrace},
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{
    CAlloc, CStack, ChanMade, ChanSend, EventHeader, FinalizerSet, GoroutineCreated,
    GoroutineExited, Malloc, ProbeConfig, ProbeKind, C_ALLOCS_ENTRIES, EVENTS_RING_BYTES,
    PROBE_KINDS, STACKS_ENTRIES,
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
fn user_stack(ctx: &impl StackIdContext) -> i64 {
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
            stack_id: user_stack(&ctx),
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

/// `runtime.chansend(c *hchan, ep unsafe.Pointer, block bool, callerpc uintptr)`: c in RAX,
/// callerpc in RDI.
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
            // `callerpc` (RDI): what chansend1, selectnbsend and reflect pass, the return
            // address into the function with the send statement. [RSP] would point into
            // chansend1, the runtime's wrapper.
            caller_pc: r.rdi,
        },
    );
    0
}

/// At each RET of `runtime.makechan`: RAX holds the new channel, and [RSP] the return address
/// into the `make` (the frame is already torn down).
#[uprobe]
pub fn gotrace_makechan_ret(ctx: ProbeContext) -> u32 {
    let cfg = config();
    let r = regs(&ctx);
    let chan = r.rax;
    emit(
        ProbeKind::ChanMake,
        ChanMade {
            header: header(ProbeKind::ChanMake, current_goid(&ctx, &cfg)),
            chan,
            dataqsiz: read_u64(chan + cfg.hchan_dataqsiz),
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

/// Size asked by the C allocation in flight on each thread (entry -> return).
#[map]
static C_PENDING: HashMap<u64, u64> = HashMap::with_max_entries(65536, 0);

/// C allocations not freed yet, by address.
#[map]
static C_ALLOCS: HashMap<u64, CAlloc> = HashMap::with_max_entries(C_ALLOCS_ENTRIES, 0);

/// Outstanding bytes and blocks per allocation stack, per CPU (userspace sums the CPUs): a
/// block allocated on one CPU and freed on another adds on one and subtracts on the other,
/// without atomics.
#[map]
static C_STACKS: PerCpuHashMap<i64, CStack> = PerCpuHashMap::with_max_entries(16384, 0);

/// Adds (or with wrapped negative amounts, subtracts) to a stack's outstanding totals.
#[inline(always)]
fn c_stack_add(stack_id: i64, bytes: u64, blocks: u64) {
    if C_STACKS.get_ptr_mut(stack_id).is_none() {
        let _ = C_STACKS.insert(stack_id, CStack::default(), 1 /* BPF_NOEXIST */);
    }
    if let Some(s) = C_STACKS.get_ptr_mut(stack_id) {
        unsafe {
            (*s).bytes = (*s).bytes.wrapping_add(bytes);
            (*s).blocks = (*s).blocks.wrapping_add(blocks);
        }
    }
}

#[inline(always)]
fn tid() -> u64 {
    bpf_get_current_pid_tgid() & 0xffff_ffff
}

#[inline(always)]
fn c_alloc_entry(size: u64) -> u32 {
    bump(&HITS, ProbeKind::CMalloc);
    let _ = C_PENDING.insert(tid(), size, 0);
    0
}

/// libc `malloc(size)` (C calling convention: RDI).
#[uprobe]
pub fn gotrace_c_malloc(ctx: ProbeContext) -> u32 {
    c_alloc_entry(regs(&ctx).rdi)
}

/// libc `calloc(nmemb, size)`.
#[uprobe]
pub fn gotrace_c_calloc(ctx: ProbeContext) -> u32 {
    let r = regs(&ctx);
    // A plain product: BPF has no 128-bit multiply for an overflow check, and calloc itself
    // refuses sizes that overflow.
    c_alloc_entry(r.rdi.wrapping_mul(r.rsi))
}

/// libc `realloc(ptr, size)`: the old block is gone either way (moved or grown in place).
#[uprobe]
pub fn gotrace_c_realloc(ctx: ProbeContext) -> u32 {
    let r = regs(&ctx);
    if r.rdi != 0 {
        forget_c_block(r.rdi);
    }
    c_alloc_entry(r.rsi)
}

/// Return of malloc/calloc/realloc: C code, whose return addresses Go never moves, so a
/// uretprobe is safe here (unlike on Go functions).
#[uretprobe]
pub fn gotrace_c_alloc_ret(ctx: RetProbeContext) -> u32 {
    let t = tid();
    let Some(size) = (unsafe { C_PENDING.get(t) }).copied() else {
        return 0;
    };
    let _ = C_PENDING.remove(t);
    let addr = unsafe { (*ctx.regs).rax };
    if addr != 0 {
        let alloc = CAlloc {
            size,
            stack_id: user_stack(&ctx),
            ktime_ns: unsafe { bpf_ktime_get_ns() },
        };
        if C_ALLOCS.insert(addr, alloc, 0).is_ok() {
            c_stack_add(alloc.stack_id, size, 1);
        } else {
            bump(&LOST, ProbeKind::CMalloc);
        }
    }
    0
}

/// libc `free(ptr)`.
#[uprobe]
pub fn gotrace_c_free(ctx: ProbeContext) -> u32 {
    let ptr = regs(&ctx).rdi;
    if ptr != 0 {
        bump(&HITS, ProbeKind::CFree);
        forget_c_block(ptr);
    }
    0
}

/// A block freed (or moved by realloc): it no longer counts for its stack.
#[inline(always)]
fn forget_c_block(ptr: u64) {
    if let Some(a) = unsafe { C_ALLOCS.get(ptr) }.copied() {
        c_stack_add(a.stack_id, a.size.wrapping_neg(), 1u64.wrapping_neg());
        let _ = C_ALLOCS.remove(ptr);
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
