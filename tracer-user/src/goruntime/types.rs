//! Go type names (`*main.conn`) from a type descriptor's address, read from the binary's type
//! section the way `reflect.Type.String` does. Stripping keeps the section: names survive.

use super::{Field, Offsets};
use crate::binary::GoBinary;

/// `tflagExtraStar` (internal/abi, runtime before 1.21): the stored name has a leading `*`
/// that belongs to the pointer type; the type itself drops it.
const TFLAG_EXTRA_STAR: u8 = 1 << 1;

/// Longest name read (names are varint-prefixed; a corrupt length must not read far).
const MAX_NAME: usize = 4096;

pub struct TypeNames<'b> {
    binary: &'b GoBinary,
    types: u64,
    etypes: u64,
    str_off: u64,
    tflag: u64,
}

impl<'b> TypeNames<'b> {
    pub fn new(binary: &'b GoBinary, offsets: &Offsets) -> Option<Self> {
        let m = binary.moduledata().ok()?;
        Some(TypeNames {
            binary,
            types: m.types,
            etypes: m.etypes,
            str_off: offsets.get(Field::TypeStr)?,
            tflag: offsets.get(Field::TypeTflag)?,
        })
    }

    /// The name of the type whose descriptor is at `typ` (a link-time address).
    pub fn name(&self, typ: u64) -> Option<String> {
        if !(self.types..self.etypes).contains(&typ) {
            return None;
        }
        let bytes = |addr: u64, len: u64| self.binary.elf.bytes_at(self.binary.data(), addr, len);
        let tflag = bytes(typ + self.tflag, 1)?[0];
        let off = i32::from_le_bytes(bytes(typ + self.str_off, 4)?.try_into().ok()?);
        // A name: one byte of flags, a varint length, the bytes (Go 1.17+).
        let name = self.types.checked_add_signed(i64::from(off))?;
        let head = bytes(name, 1 + 3)?;
        let (mut len, mut shift, mut used) = (0usize, 0, 0);
        for b in &head[1..] {
            len |= usize::from(b & 0x7f) << shift;
            used += 1;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        if len == 0 || len > MAX_NAME {
            return None;
        }
        let text = bytes(name + 1 + used, len as u64)?;
        let text = std::str::from_utf8(text).ok()?;
        let text = match tflag & TFLAG_EXTRA_STAR {
            0 => text,
            _ => text.strip_prefix('*').unwrap_or(text),
        };
        Some(text.to_string())
    }
}
