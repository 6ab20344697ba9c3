//! Ring-buffer records decoded into typed events.

use tracer_common::{
    ChanMade, ChanSend, EventHeader, FinalizerSet, GoroutineCreated, GoroutineExited, Malloc,
    ProbeKind,
};

#[derive(Clone, Copy, Debug)]
pub enum Event {
    GoroutineCreated(GoroutineCreated),
    GoroutineExited(GoroutineExited),
    ChanSend(ChanSend),
    ChanMade(ChanMade),
    FinalizerSet(FinalizerSet),
    Malloc(Malloc),
}

impl Event {
    /// Decodes one record; `None` for a record too short for its kind (never produced by our
    /// programs, but the reader must not trust the buffer blindly).
    pub fn decode(bytes: &[u8]) -> Option<Event> {
        let header: EventHeader = read(bytes)?;
        Some(
            match ProbeKind::from_u32(u32::try_from(header.kind).ok()?)? {
                ProbeKind::GoroutineCreate => Event::GoroutineCreated(read(bytes)?),
                ProbeKind::GoroutineExit => Event::GoroutineExited(read(bytes)?),
                ProbeKind::ChanSend => Event::ChanSend(read(bytes)?),
                ProbeKind::ChanMake => Event::ChanMade(read(bytes)?),
                ProbeKind::SetFinalizer => Event::FinalizerSet(read(bytes)?),
                ProbeKind::Malloc => Event::Malloc(read(bytes)?),
                // Recorded in a map by the kernel side, never sent as events.
                ProbeKind::CMalloc | ProbeKind::CFree => return None,
            },
        )
    }

    pub fn header(&self) -> &EventHeader {
        match self {
            Event::GoroutineCreated(e) => &e.header,
            Event::GoroutineExited(e) => &e.header,
            Event::ChanSend(e) => &e.header,
            Event::ChanMade(e) => &e.header,
            Event::FinalizerSet(e) => &e.header,
            Event::Malloc(e) => &e.header,
        }
    }
}

/// Copies a `#[repr(C)]` record of plain integers out of a possibly unaligned buffer.
fn read<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: T is Pod (every bit pattern is valid); the length was checked and
    // read_unaligned handles alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}
