//! A reader for Go's `.gopclntab`: the function table, names and line tables that the runtime
//! itself uses for tracebacks. Unlike `.symtab` and DWARF it survives `-ldflags="-s -w"`, so it is
//! the one source of function addresses that works for every Go binary.
//!
//! Layouts handled: Go 1.18–1.19 (magic `0xfffffff0`) and 1.20+ (`0xfffffff1`; `_func` gained
//! `startLine`). From 1.26 the header's `textStart` is zero and the text start comes from the
//! module data instead (the caller passes it in).

use std::ops::Range;

use crate::util::{read_u64, SharedBytes};

const MAGIC_1_18: u32 = 0xfffffff0;
const MAGIC_1_20: u32 = 0xfffffff1;
const OLD_MAGICS: [(u32, &str); 2] = [(0xfffffffb, "1.2-1.15"), (0xfffffffa, "1.16-1.17")];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PclntabError {
    #[error("no .gopclntab found")]
    Missing,
    #[error("pclntab of Go {0} is not supported (Go 1.18+ layouts only)")]
    OldFormat(&'static str),
    #[error("unknown pclntab magic {0:#x}")]
    UnknownMagic(u32),
    #[error("pclntab is truncated or corrupt: {0}")]
    Corrupt(&'static str),
}

/// One function of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Func {
    pub name: String,
    /// Link-time address range `[entry, end)`.
    pub entry: u64,
    pub end: u64,
    /// Index in the function table, for further lookups.
    pub index: usize,
}

impl Func {
    pub fn range(&self) -> Range<u64> {
        self.entry..self.end
    }
}

pub struct Pclntab {
    data: SharedBytes,
    /// Where the pclntab header starts in `data`.
    base: usize,
    len: usize,
    /// Layout generation: false = 1.18/1.19, true = 1.20+.
    go120: bool,
    quantum: u64,
    nfunc: usize,
    text_start: u64,
    funcname: usize,
    cutab: usize,
    filetab: usize,
    pctab: usize,
    /// The function table (functab entries followed by the `_func` records).
    pcln: usize,
}

/// What a PC maps to in the line table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineInfo {
    pub file: String,
    pub line: u32,
}

/// The pclntab header (`runtime.pcHeader`): what can be read before the text start is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcHeader {
    /// Layout generation: false = 1.18/1.19, true = 1.20+.
    pub go120: bool,
    pub quantum: u64,
    pub nfunc: usize,
    /// `textStart`; zero from Go 1.26 on, where only `moduledata.text` has it.
    pub text_start: u64,
    pub funcname: usize,
    pub cutab: usize,
    pub filetab: usize,
    pub pctab: usize,
    /// Offset of the function table (`moduledata.ftab` points here).
    pub pcln: usize,
}

impl PcHeader {
    /// Parses the header at the start of `bytes` (the whole pclntab, for range checks).
    pub fn parse(bytes: &[u8]) -> Result<Self, PclntabError> {
        let len = bytes.len();
        let magic = u32::from_le_bytes(
            bytes
                .get(0..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(PclntabError::Corrupt("header"))?,
        );
        let go120 = match magic {
            MAGIC_1_18 => false,
            MAGIC_1_20 => true,
            m => {
                return Err(match OLD_MAGICS.iter().find(|(om, _)| *om == m) {
                    Some((_, v)) => PclntabError::OldFormat(v),
                    None => PclntabError::UnknownMagic(m),
                })
            }
        };
        let quantum = u64::from(*bytes.get(6).ok_or(PclntabError::Corrupt("header"))?);
        let ptr = *bytes.get(7).ok_or(PclntabError::Corrupt("header"))?;
        if ptr != 8 || quantum == 0 {
            return Err(PclntabError::Corrupt("pointer size or quantum"));
        }
        let word = |i: usize| -> Result<u64, PclntabError> {
            let off = 8 + i * 8;
            read_u64(bytes, off).ok_or(PclntabError::Corrupt("header"))
        };
        let to_off = |v: u64| -> Result<usize, PclntabError> {
            usize::try_from(v)
                .ok()
                .filter(|&o| o < len)
                .ok_or(PclntabError::Corrupt("header offset out of range"))
        };
        let header = PcHeader {
            go120,
            quantum,
            nfunc: usize::try_from(word(0)?).map_err(|_| PclntabError::Corrupt("nfunc"))?,
            text_start: word(2)?,
            funcname: to_off(word(3)?)?,
            cutab: to_off(word(4)?)?,
            filetab: to_off(word(5)?)?,
            pctab: to_off(word(6)?)?,
            pcln: to_off(word(7)?)?,
        };
        // The function table has nfunc+1 entries (the last one marks the end of text).
        let ftab_end = header
            .nfunc
            .checked_add(1)
            .and_then(|n| n.checked_mul(8))
            .and_then(|b| b.checked_add(header.pcln))
            .ok_or(PclntabError::Corrupt("nfunc"))?;
        if ftab_end > len {
            return Err(PclntabError::Corrupt("function table exceeds pclntab"));
        }
        Ok(header)
    }
}

impl Pclntab {
    /// `data[base..base+len]` is the pclntab (the `.gopclntab` section or the range the module
    /// data points to). `text_start` is needed when the header does not carry it (Go 1.26+).
    pub fn parse(
        data: SharedBytes,
        base: usize,
        len: usize,
        text_start: Option<u64>,
    ) -> Result<Self, PclntabError> {
        let bytes = data
            .get(base..base.saturating_add(len))
            .ok_or(PclntabError::Missing)?;
        let h = PcHeader::parse(bytes)?;
        let text_start = match (h.text_start, text_start) {
            (0, Some(t)) => t,
            (0, None) => return Err(PclntabError::Corrupt("no text start")),
            (t, _) => t,
        };
        Ok(Pclntab {
            go120: h.go120,
            quantum: h.quantum,
            nfunc: h.nfunc,
            text_start,
            funcname: h.funcname,
            cutab: h.cutab,
            filetab: h.filetab,
            pctab: h.pctab,
            pcln: h.pcln,
            data,
            base,
            len,
        })
    }

    fn bytes(&self) -> &[u8] {
        &self.data[self.base..self.base + self.len]
    }

    fn u32_at(&self, off: usize) -> Option<u32> {
        self.bytes()
            .get(off..off.checked_add(4)?)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    }

    /// Number of functions in the table.
    pub fn func_count(&self) -> usize {
        self.nfunc
    }

    pub fn text_start(&self) -> u64 {
        self.text_start
    }

    /// `(entryoff, funcoff)` of function table entry `i` (0..=nfunc).
    fn ftab(&self, i: usize) -> Option<(u32, u32)> {
        let off = self.pcln + i * 8;
        Some((self.u32_at(off)?, self.u32_at(off + 4)?))
    }

    /// Offset of function `i`'s `_func` record in the pclntab.
    fn func_record(&self, i: usize) -> Option<usize> {
        let (_, funcoff) = self.ftab(i)?;
        let off = self.pcln.checked_add(funcoff as usize)?;
        // The record is at least 40 bytes; make every later field read in-bounds-checked anyway.
        (off < self.len).then_some(off)
    }

    fn cstr(&self, off: usize) -> Option<&str> {
        let b = self.bytes().get(off..)?;
        let end = b.iter().position(|&c| c == 0)?;
        std::str::from_utf8(&b[..end]).ok()
    }

    pub fn func(&self, i: usize) -> Option<Func> {
        if i >= self.nfunc {
            return None;
        }
        let (entry, _) = self.ftab(i)?;
        let (end, _) = self.ftab(i + 1)?;
        let rec = self.func_record(i)?;
        let name_off = self.u32_at(rec + 4)? as i32;
        let name = self
            .cstr(self.funcname.checked_add(usize::try_from(name_off).ok()?)?)?
            .to_string();
        Some(Func {
            name,
            entry: self.text_start + u64::from(entry),
            end: self.text_start + u64::from(end.max(entry)),
            index: i,
        })
    }

    pub fn funcs(&self) -> impl Iterator<Item = Func> + '_ {
        (0..self.nfunc).filter_map(|i| self.func(i))
    }

    /// The function named exactly `name` (e.g. `runtime.newproc1`).
    pub fn find(&self, name: &str) -> Option<Func> {
        // Compare raw names before building a String: this runs over tens of thousands of entries.
        (0..self.nfunc).find_map(|i| {
            let rec = self.func_record(i)?;
            let name_off = usize::try_from(self.u32_at(rec + 4)? as i32).ok()?;
            (self.cstr(self.funcname + name_off)? == name)
                .then(|| self.func(i))
                .flatten()
        })
    }

    /// Index of the function containing `pc`.
    pub fn func_index_for_pc(&self, pc: u64) -> Option<usize> {
        let off = u32::try_from(pc.checked_sub(self.text_start)?).ok()?;
        let (last, _) = self.ftab(self.nfunc)?;
        if off >= last {
            return None;
        }
        // Largest i with entry(i) <= off.
        let (mut lo, mut hi) = (0usize, self.nfunc);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if self.ftab(mid)?.0 <= off {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        (self.ftab(lo)?.0 <= off).then_some(lo)
    }

    pub fn func_for_pc(&self, pc: u64) -> Option<Func> {
        self.func(self.func_index_for_pc(pc)?)
    }

    /// File and line of `pc` inside function `i` (the outermost function: inlined calls are
    /// resolved by the inline tree on top of this).
    pub fn line(&self, i: usize, pc: u64) -> Option<LineInfo> {
        let rec = self.func_record(i)?;
        let entry = self.text_start + u64::from(self.ftab(i)?.0);
        let pcfile = self.u32_at(rec + 20)?;
        let pcln = self.u32_at(rec + 24)?;
        let cu_offset = self.u32_at(rec + 32)?;
        let fileno = self.pcvalue(pcfile, entry, pc)?;
        let line = self.pcvalue(pcln, entry, pc)?;
        let file = self.file(cu_offset, fileno)?;
        Some(LineInfo {
            file,
            line: u32::try_from(line).ok()?,
        })
    }

    /// The `startLine` of function `i` (Go 1.20+ records it; older versions return `None`).
    pub fn start_line(&self, i: usize) -> Option<u32> {
        if !self.go120 {
            return None;
        }
        let rec = self.func_record(i)?;
        u32::try_from(self.u32_at(rec + 36)? as i32).ok()
    }

    fn file(&self, cu_offset: u32, fileno: i32) -> Option<String> {
        let idx = usize::try_from(cu_offset).ok()? + usize::try_from(fileno).ok()?;
        let off = self.u32_at(self.cutab + idx * 4)?;
        if off == u32::MAX {
            return None;
        }
        Some(self.cstr(self.filetab + off as usize)?.to_string())
    }

    /// Decodes a pc-value table (as the runtime's `pcvalue`): the value in effect at `target`.
    fn pcvalue(&self, table: u32, entry: u64, target: u64) -> Option<i32> {
        if table == 0 {
            return None;
        }
        let mut p = self
            .bytes()
            .get(self.pctab.checked_add(table as usize)?..)?;
        let mut pc = entry;
        let mut val: i32 = -1;
        let mut first = true;
        loop {
            let (uvdelta, n) = read_varint(p)?;
            if uvdelta == 0 && !first {
                return None;
            }
            first = false;
            p = &p[n..];
            val = val.wrapping_add((-((uvdelta & 1) as i32)) ^ ((uvdelta >> 1) as i32));
            let (pcdelta, n) = read_varint(p)?;
            p = &p[n..];
            pc = pc.checked_add(u64::from(pcdelta) * self.quantum)?;
            if target < pc {
                return Some(val);
            }
        }
    }
}

fn read_varint(p: &[u8]) -> Option<(u32, usize)> {
    let mut v: u32 = 0;
    let mut shift = 0;
    for (i, &b) in p.iter().enumerate() {
        v |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
        shift += 7;
        if shift >= 35 {
            return None;
        }
    }
    None
}
