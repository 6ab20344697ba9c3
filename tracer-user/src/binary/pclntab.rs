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

/// FUNCDATA index of the inline tree and PCDATA index of the inline-tree index table
/// (`abi.FUNCDATA_InlTree`, `abi.PCDATA_InlTreeIndex`; unchanged since Go 1.12).
pub const FUNCDATA_INL_TREE: u8 = 3;
pub const PCDATA_INL_TREE_INDEX: u32 = 2;

/// One `runtime.inlinedCall`: a call the compiler inlined into a physical function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InlinedCall {
    /// `funcID` of the inlined (called) function.
    pub func_id: u8,
    /// Its name, as an offset in the function name table.
    pub name_off: i32,
    /// Offset from the physical function's entry of an instruction whose position is the call
    /// site: the inline-tree index and file:line there are the caller's.
    pub parent_pc: u32,
}

/// More nested inlined calls than any compiler produces (Go's inlining budget keeps them to a
/// few dozen).
const MAX_INLINE_DEPTH: usize = 1024;

/// One logical frame read from the pclntab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFrame {
    /// As stored (shape arguments of generic functions included).
    pub name: String,
    pub func_id: u8,
    pub file: String,
    pub line: u32,
    /// An inlined call rather than the physical function.
    pub inlined: bool,
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
    /// A pclntab magic gotrace reads (Go 1.18+).
    pub fn is_magic(magic: u32) -> bool {
        magic == MAGIC_1_18 || magic == MAGIC_1_20
    }

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

    /// Bytes between the stack pointer at `pc` in function `i` and the function's return
    /// address (the `pcsp` table Go's own unwinder uses): the caller's frame starts 8 bytes
    /// above. 0 at the entry, the frame size after the prologue.
    pub fn sp_delta(&self, i: usize, pc: u64) -> Option<u64> {
        let rec = self.func_record(i)?;
        let entry = self.text_start + u64::from(self.ftab(i)?.0);
        let pcsp = self.u32_at(rec + 16)?;
        u64::try_from(self.pcvalue(pcsp, entry, pc)?).ok()
    }

    /// The `startLine` of function `i` (Go 1.20+ records it; older versions return `None`).
    pub fn start_line(&self, i: usize) -> Option<u32> {
        if !self.go120 {
            return None;
        }
        let rec = self.func_record(i)?;
        u32::try_from(self.u32_at(rec + 36)? as i32).ok()
    }

    /// Every logical frame at `pc` (a "call PC", not a return address), innermost first, as
    /// the runtime's `inlineUnwinder` walks them: the inline-tree index at `pc` names the
    /// innermost inlined call; its `parentPc` is a PC of the caller's code, whose own index
    /// names the next frame out, until index -1, the physical function. Each frame's file:line
    /// is the line table's at the PC that stands for it. `inline_tree(off)` gives the bytes at
    /// `moduledata.gofunc + off` (to the end of their segment), or `None` when unknown: then
    /// only the physical function is returned, with the innermost file:line (as
    /// `go tool addr2line` reports it). Empty when no function contains `pc`.
    pub fn logical_frames<'t>(
        &self,
        pc: u64,
        inline_tree: impl Fn(u32) -> Option<&'t [u8]>,
    ) -> Vec<RawFrame> {
        let mut out = Vec::new();
        let Some(i) = self.func_index_for_pc(pc) else {
            return out;
        };
        let Some(func) = self.func(i) else {
            return out;
        };
        let tree = self.funcdata(i, FUNCDATA_INL_TREE).and_then(inline_tree);
        let mut at = pc;
        // The runtime trusts the tree to be acyclic; a corrupt file must not loop forever.
        for _ in 0..MAX_INLINE_DEPTH {
            let call = tree.and_then(|t| {
                let index = self.pcdata_value(i, PCDATA_INL_TREE_INDEX, at);
                (index >= 0).then(|| self.inlined_call(t, index)).flatten()
            });
            let line = self.line(i, at);
            let (file, line) = line.map(|l| (l.file, l.line)).unwrap_or_default();
            match call {
                Some(call) => {
                    out.push(RawFrame {
                        name: self.name_at(call.name_off).unwrap_or("?").to_string(),
                        func_id: call.func_id,
                        file,
                        line,
                        inlined: true,
                    });
                    at = func.entry + u64::from(call.parent_pc);
                }
                None => {
                    out.push(RawFrame {
                        name: func.name.clone(),
                        func_id: self.func_id(i).unwrap_or(0),
                        file,
                        line,
                        inlined: false,
                    });
                    break;
                }
            }
        }
        out
    }

    /// `_func.funcID` of function `i` (after `startLine`, which Go 1.20 inserted).
    pub fn func_id(&self, i: usize) -> Option<u8> {
        let rec = self.func_record(i)?;
        let off = if self.go120 { 40 } else { 36 };
        self.bytes().get(rec + off).copied()
    }

    /// Where the variable-length arrays after a `_func` record start: `npcdata` u32 offsets
    /// into pctab, then `nfuncdata` u32 offsets from `moduledata.gofunc`.
    fn func_tables(&self, i: usize) -> Option<(usize, u32, u8)> {
        let rec = self.func_record(i)?;
        let fixed = if self.go120 { 44 } else { 40 };
        let npcdata = self.u32_at(rec + 28)?;
        let nfuncdata = *self.bytes().get(rec + fixed - 1)?;
        Some((rec + fixed, npcdata, nfuncdata))
    }

    /// The value of PCDATA table `table` of function `i` at `pc`, or -1 (as the runtime's
    /// non-strict `pcdatavalue1`: a missing table or a PC it does not cover reads as -1).
    pub fn pcdata_value(&self, i: usize, table: u32, pc: u64) -> i32 {
        let value = || {
            let (start, npcdata, _) = self.func_tables(i)?;
            if table >= npcdata {
                return None;
            }
            let off = self.u32_at(start + table as usize * 4)?;
            let entry = self.text_start + u64::from(self.ftab(i)?.0);
            self.pcvalue(off, entry, pc)
        };
        value().unwrap_or(-1)
    }

    /// FUNCDATA `index` of function `i`: an offset from `moduledata.gofunc`, if present.
    pub fn funcdata(&self, i: usize, index: u8) -> Option<u32> {
        let (start, npcdata, nfuncdata) = self.func_tables(i)?;
        if index >= nfuncdata {
            return None;
        }
        let p = start.checked_add((npcdata as usize).checked_add(usize::from(index))? * 4)?;
        self.u32_at(p).filter(|&off| off != u32::MAX)
    }

    /// The function name at offset `name_off` of the name table, as stored (generic functions
    /// keep their shape names: see [`func_name_for_print`]).
    pub fn name_at(&self, name_off: i32) -> Option<&str> {
        self.cstr(self.funcname.checked_add(usize::try_from(name_off).ok()?)?)
    }

    /// Entry `index` of an inline tree (`runtime.inlinedCall`) whose bytes start at `tree`.
    pub fn inlined_call(&self, tree: &[u8], index: i32) -> Option<InlinedCall> {
        let index = usize::try_from(index).ok()?;
        let i32_at = |off: usize| -> Option<i32> {
            let b = tree.get(off..off.checked_add(4)?)?;
            Some(i32::from_le_bytes(b.try_into().ok()?))
        };
        if self.go120 {
            // Go 1.20+: {funcID u8; _ [3]byte; nameOff, parentPc, startLine int32}.
            let base = index.checked_mul(16)?;
            Some(InlinedCall {
                func_id: *tree.get(base)?,
                name_off: i32_at(base + 4)?,
                parent_pc: u32::try_from(i32_at(base + 8)?).ok()?,
            })
        } else {
            // Go 1.18-1.19: {parent int16; funcID u8; _ byte; file, line, func_, parentPc int32}.
            let base = index.checked_mul(20)?;
            Some(InlinedCall {
                func_id: *tree.get(base + 2)?,
                name_off: i32_at(base + 12)?,
                parent_pc: u32::try_from(i32_at(base + 16)?).ok()?,
            })
        }
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

/// A function name as the runtime prints it (`runtime.Frame.Function`, tracebacks): what is
/// inside the outermost brackets (the shape arguments of a generic function) becomes `...`.
/// Go 1.21+ does it when printing (`funcNameForPrint`), and 1.27 also keeps the text between
/// a generic type's and its method's brackets (`pkg.T[...].M[...]`); Go 1.18-1.20's linker
/// wrote names already rewritten by the simple rule into the pclntab (DWARF keeps full names).
pub fn func_name_for_print(
    name: &str,
    version: crate::binary::GoVersion,
) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let (Some(i), Some(j)) = (name.find('['), name.rfind(']')) else {
        return Cow::Borrowed(name);
    };
    if j <= i {
        return Cow::Borrowed(name);
    }
    let interior = &name[i + 1..j];
    if (version.major, version.minor) < (1, 27) || !interior.contains('[') {
        return Cow::Owned(format!("{}[...]{}", &name[..i], &name[j + 1..]));
    }
    // Go 1.27: "...]___[..." in the interior is a generic method of a generic type.
    let mut depth = 1;
    let (mut rbr, mut lbr) = (None, None);
    for (k, c) in interior.char_indices() {
        if c == '[' {
            depth += 1;
            if depth != 1 {
                continue;
            }
            lbr = Some(k);
            break;
        }
        if c == ']' {
            depth -= 1;
            if depth < 0 {
                break;
            }
            if depth != 0 {
                continue;
            }
            rbr = Some(k);
        }
    }
    if depth == 1 {
        match (rbr, lbr) {
            (Some(r), Some(l)) if l > r => {
                return Cow::Owned(format!(
                    "{}[...]{}[...]{}",
                    &name[..i],
                    &interior[r + 1..l],
                    &name[j + 1..]
                ))
            }
            (None, None) => return Cow::Owned(format!("{}[...]{}", &name[..i], &name[j + 1..])),
            _ => {}
        }
    }
    Cow::Borrowed(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::GoVersion;

    const GO119: GoVersion = GoVersion::new(1, 19, 0);
    const GO126: GoVersion = GoVersion::new(1, 26, 0);
    const GO127: GoVersion = GoVersion::new(1, 27, 0);

    #[test]
    fn print_names_follow_each_releases_rule() {
        // Plain names are never touched.
        for v in [GO119, GO126, GO127] {
            assert_eq!(func_name_for_print("main.(*T).M", v), "main.(*T).M");
        }
        // Everything between the first '[' and the last ']' becomes "..." (the linker's rule
        // in 1.18-1.20, the runtime's from 1.21), array types in names included.
        for v in [GO119, GO126, GO127] {
            assert_eq!(
                func_name_for_print("main.F[go.shape.int_0]", v),
                "main.F[...]"
            );
            assert_eq!(
                func_name_for_print("main.(*List[go.shape.string]).Push", v),
                "main.(*List[...]).Push"
            );
            assert_eq!(
                func_name_for_print("type:.eq.[2]string", v),
                "type:.eq.[...]string"
            );
        }
        // A generic method of a generic type: 1.27 keeps the text between the two lists.
        let name = "main.T[go.shape.int].M[go.shape.string]";
        assert_eq!(func_name_for_print(name, GO126), "main.T[...]");
        assert_eq!(func_name_for_print(name, GO127), "main.T[...].M[...]");
        // Nested brackets in one list are still one list.
        assert_eq!(
            func_name_for_print("main.F[[]go.shape.int]", GO127),
            "main.F[...]"
        );
        // Unbalanced names are printed as they are.
        assert_eq!(func_name_for_print("main.F[x", GO127), "main.F[x");
        assert_eq!(func_name_for_print("main.F]x[", GO126), "main.F]x[");
        assert_eq!(func_name_for_print("a[b]]c[d]", GO127), "a[b]]c[d]");
    }

    fn header(magic: u32, nfunc: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[0..4].copy_from_slice(&magic.to_le_bytes());
        b[6] = 1;
        b[7] = 8;
        let words = [nfunc, 0, 0x401000, 72, 80, 88, 96, 104];
        for (i, w) in words.iter().enumerate() {
            b[8 + i * 8..16 + i * 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    #[test]
    fn header_is_validated() {
        let ok = PcHeader::parse(&header(MAGIC_1_20, 2, 200)).unwrap();
        assert!(ok.go120);
        assert_eq!((ok.nfunc, ok.text_start, ok.pcln), (2, 0x401000, 104));
        assert!(!PcHeader::parse(&header(MAGIC_1_18, 2, 200)).unwrap().go120);
        assert_eq!(
            PcHeader::parse(&header(0xfffffffa, 2, 200)),
            Err(PclntabError::OldFormat("1.16-1.17"))
        );
        assert_eq!(
            PcHeader::parse(&header(0x12345678, 2, 200)),
            Err(PclntabError::UnknownMagic(0x12345678))
        );
        // The function table (nfunc+1 entries of 8 bytes at offset 104) must fit.
        assert!(PcHeader::parse(&header(MAGIC_1_20, 11, 200)).is_ok());
        assert!(PcHeader::parse(&header(MAGIC_1_20, 12, 200)).is_err());
        assert!(PcHeader::parse(&header(MAGIC_1_20, u64::MAX, 200)).is_err());
        // Truncated headers.
        let full = header(MAGIC_1_20, 2, 200);
        for len in [0, 3, 7, 8, 40, 71] {
            assert!(PcHeader::parse(&full[..len]).is_err(), "len {len}");
        }
        // Offsets must point inside the table.
        let mut bad = header(MAGIC_1_20, 2, 200);
        bad[8 + 3 * 8..8 + 4 * 8].copy_from_slice(&500u64.to_le_bytes());
        assert!(PcHeader::parse(&bad).is_err());
    }

    #[test]
    fn inline_tree_entries_per_layout() {
        let mut go120 = header(MAGIC_1_20, 0, 200);
        let mut go118 = header(MAGIC_1_18, 0, 200);
        go120[6] = 1;
        go118[6] = 1;
        let t120 = Pclntab::parse(SharedBytes::new(go120), 0, 200, None).unwrap();
        let t118 = Pclntab::parse(SharedBytes::new(go118), 0, 200, None).unwrap();
        // Go 1.20+: {funcID u8; _ [3]byte; nameOff, parentPc, startLine int32}, 16 bytes.
        let mut tree = vec![0u8; 32];
        tree[16] = 21;
        tree[20..24].copy_from_slice(&1234i32.to_le_bytes());
        tree[24..28].copy_from_slice(&56i32.to_le_bytes());
        assert_eq!(
            t120.inlined_call(&tree, 1),
            Some(InlinedCall {
                func_id: 21,
                name_off: 1234,
                parent_pc: 56
            })
        );
        assert_eq!(t120.inlined_call(&tree, 2), None);
        assert_eq!(t120.inlined_call(&tree, -1), None);
        // Go 1.18-1.19: {parent int16; funcID u8; _ byte; file, line, func_, parentPc int32}.
        let mut tree = vec![0u8; 40];
        tree[22] = 7;
        tree[32..36].copy_from_slice(&99i32.to_le_bytes());
        tree[36..40].copy_from_slice(&12i32.to_le_bytes());
        assert_eq!(
            t118.inlined_call(&tree, 1),
            Some(InlinedCall {
                func_id: 7,
                name_off: 99,
                parent_pc: 12
            })
        );
        // A negative parentPc is corrupt.
        tree[36..40].copy_from_slice(&(-4i32).to_le_bytes());
        assert_eq!(t118.inlined_call(&tree, 1), None);
    }

    #[test]
    fn varints() {
        assert_eq!(read_varint(&[0x05]), Some((5, 1)));
        assert_eq!(read_varint(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
            Some((u32::MAX, 5))
        );
        assert_eq!(read_varint(&[0x80]), None);
        assert_eq!(read_varint(&[]), None);
        assert_eq!(read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), None);
    }
}
