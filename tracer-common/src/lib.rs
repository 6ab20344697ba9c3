//! Records shared by gotrace's eBPF programs (`tracer-ebpf`) and its userspace (`tracer-user`).
//!
//! Every type here is `#[repr(C)]`, made only of `u64`s so that the layout is identical on the
//! BPF target and the host and has no padding for the verifier to reject. The kernel writes them
//! into the ring buffer; userspace reads them back by looking at [`EventHeader::kind`] first.
#![no_std]

/// The probes gotrace can place. The discriminant indexes the per-probe counter arrays
/// ([`HITS_MAP`], [`LOST_MAP`]) and tags every event.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    /// `runtime.newproc1` returned a new goroutine (probed at its RET instructions).
    GoroutineCreate = 0,
    /// `runtime.goexit1`: the current goroutine finished.
    GoroutineExit = 1,
    /// `runtime.chansend`: a send on a channel (every call: hot path, opt-in).
    ChanSend = 2,
    /// `runtime.SetFinalizer`.
    SetFinalizer = 3,
    /// Every allocation (`mallocgc` and its size-class variants): `--exact-alloc` only.
    Malloc = 4,
    /// libc `malloc`/`calloc`/`realloc` (C code and cgo): `--cgo-malloc` only. Recorded in
    /// [`C_ALLOCS_MAP`], not sent as events.
    CMalloc = 5,
    /// libc `free`: `--cgo-malloc` only.
    CFree = 6,
    /// `runtime.makechan` returned a channel (probed at its RET instructions): `--chan-make`.
    ChanMake = 7,
}

/// Number of [`ProbeKind`] variants: the length of the counter arrays.
pub const PROBE_KINDS: usize = 8;

impl ProbeKind {
    pub const ALL: [ProbeKind; PROBE_KINDS] = [
        ProbeKind::GoroutineCreate,
        ProbeKind::GoroutineExit,
        ProbeKind::ChanSend,
        ProbeKind::SetFinalizer,
        ProbeKind::Malloc,
        ProbeKind::CMalloc,
        ProbeKind::CFree,
        ProbeKind::ChanMake,
    ];

    pub fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }
}

/// Names of the maps and the configuration global in the eBPF object.
pub const EVENTS_MAP: &str = "EVENTS";
pub const HITS_MAP: &str = "HITS";
pub const LOST_MAP: &str = "LOST";
pub const STACKS_MAP: &str = "STACKS";
pub const CONFIG_GLOBAL: &str = "CONFIG";
/// C allocations not freed yet: address -> [`CAlloc`].
pub const C_ALLOCS_MAP: &str = "C_ALLOCS";

/// Outstanding C bytes and blocks per allocation stack: stack id -> [`CStack`].
pub const C_STACKS_MAP: &str = "C_STACKS";

/// Outstanding C allocations followed at once (the oldest are not evicted: a full map stops
/// recording new ones, and `gotrace` says so).
pub const C_ALLOCS_ENTRIES: u32 = 1 << 18;

/// Size of the ring buffer shared by all probes (must be a power of two multiple of the page
/// size). 8 MiB holds ~130 K events: several seconds of the fastest probe at the measured
/// ~70 K hits/s ceiling of one uprobe on this machine kind.
pub const EVENTS_RING_BYTES: u32 = 8 << 20;

/// Entries of the user stack-trace map (each holds up to 127 frames).
pub const STACKS_ENTRIES: u32 = 16384;

/// Struct offsets of the traced Go runtime, written into the eBPF object before it is loaded.
/// They come from the target's DWARF, or from the generated per-version table for stripped
/// binaries. Unused fields are zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    /// `runtime.g.goid`.
    pub g_goid: u64,
    /// `runtime.g.m`.
    pub g_m: u64,
    /// `runtime.m.curg`: the user goroutine of an M; on g0 (e.g. inside `newproc1`, which runs
    /// on the system stack) it names the goroutine that executed the `go` statement.
    pub m_curg: u64,
    /// `runtime.g.gopc`: PC of the `go` statement.
    pub g_gopc: u64,
    /// `runtime.g.startpc`: PC of the goroutine's function.
    pub g_startpc: u64,
    /// `runtime.hchan.qcount`.
    pub hchan_qcount: u64,
    /// `runtime.hchan.dataqsiz`.
    pub hchan_dataqsiz: u64,
}

/// Every event starts with this header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventHeader {
    /// A [`ProbeKind`] discriminant.
    pub kind: u64,
    /// `bpf_ktime_get_ns` at the probe (CLOCK_MONOTONIC).
    pub ktime_ns: u64,
    /// Goroutine the event is about: the new goroutine for [`GoroutineCreated`], otherwise the
    /// goroutine running when the probe fired (0 when on a system stack without one).
    pub goid: u64,
    /// Kernel thread id that hit the probe.
    pub tid: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GoroutineCreated {
    pub header: EventHeader,
    /// Goroutine that executed the `go` statement (0 when created by the runtime on g0).
    pub parent_goid: u64,
    /// PC of the `go` statement (`g.gopc`).
    pub gopc: u64,
    /// Entry PC of the goroutine's function (`g.startpc`); a `gowrapN` wrapper from Go 1.22.
    pub startpc: u64,
    /// The user stack at creation (id in the stack-trace map; negative: none). newproc1 runs
    /// on the system stack, whose frames link back to the goroutine that ran the `go`.
    pub stack_id: i64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GoroutineExited {
    pub header: EventHeader,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ChanSend {
    pub header: EventHeader,
    /// Address of the `runtime.hchan`.
    pub chan: u64,
    /// Elements in the buffer when the send began.
    pub qcount: u64,
    /// Buffer capacity (`make(chan T, N)`'s N).
    pub dataqsiz: u64,
    /// Return address into the caller of `chansend` (`chansend1` or the reflect/select path).
    pub caller_pc: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ChanMade {
    pub header: EventHeader,
    /// Address of the new `runtime.hchan`.
    pub chan: u64,
    /// Buffer capacity.
    pub dataqsiz: u64,
    /// Return address into the code that made it (`make(chan T, n)`).
    pub caller_pc: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FinalizerSet {
    pub header: EventHeader,
    /// `*_type` of the object (the eface's type word).
    pub obj_type: u64,
    /// Object address (the eface's data word).
    pub obj_addr: u64,
    /// Code pointer of the finalizer function (0 when clearing a finalizer with nil).
    pub finalizer_pc: u64,
    /// Return address into the caller of `SetFinalizer`.
    pub caller_pc: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Malloc {
    pub header: EventHeader,
    pub size: u64,
    /// `*_type` of the allocation (0 for untyped memory).
    pub typ: u64,
    pub stack_id: i64,
}

/// A C allocation not freed yet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CAlloc {
    pub size: u64,
    /// Id in the stack-trace map (negative: no stack).
    pub stack_id: i64,
    pub ktime_ns: u64,
}

/// What one allocation stack holds: kept by the kernel side (atomic adds) so that userspace
/// reads a few hundred stacks instead of every block.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CStack {
    /// Outstanding bytes and blocks (two's complement: frees subtract).
    pub bytes: u64,
    pub blocks: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C) structs of u64/i64 fields without padding.
    use super::*;
    unsafe impl aya::Pod for ProbeConfig {}
    unsafe impl aya::Pod for EventHeader {}
    unsafe impl aya::Pod for GoroutineCreated {}
    unsafe impl aya::Pod for GoroutineExited {}
    unsafe impl aya::Pod for ChanSend {}
    unsafe impl aya::Pod for ChanMade {}
    unsafe impl aya::Pod for FinalizerSet {}
    unsafe impl aya::Pod for Malloc {}
    unsafe impl aya::Pod for CAlloc {}
    unsafe impl aya::Pod for CStack {}
}
