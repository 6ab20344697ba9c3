//! From a program counter to `function (file:line)`.

pub mod pclntab;

use serde::Serialize;

use crate::binary::GoBinary;

/// A resolved code location.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Frame {
    pub function: String,
    pub file: String,
    pub line: u32,
}

impl Frame {
    pub fn unknown(pc: u64) -> Self {
        Frame {
            function: format!("{pc:#x}"),
            file: String::new(),
            line: 0,
        }
    }
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.file.is_empty() {
            write!(f, "{}", self.function)
        } else {
            write!(f, "{} ({}:{})", self.function, self.file, self.line)
        }
    }
}

/// Resolves link-time PCs of one binary.
pub struct Symbolizer<'b> {
    binary: &'b GoBinary,
}

impl<'b> Symbolizer<'b> {
    pub fn new(binary: &'b GoBinary) -> Self {
        Symbolizer { binary }
    }

    /// The frame at `pc` (a link-time address: subtract the load bias of a PIE first).
    pub fn frame(&self, pc: u64) -> Frame {
        let pcln = self.binary.pclntab();
        let Some(func) = pcln.func_index_for_pc(pc).and_then(|i| pcln.func(i)) else {
            return Frame::unknown(pc);
        };
        let line = pcln.line(func.index, pc);
        Frame {
            function: func.name,
            file: line.as_ref().map(|l| l.file.clone()).unwrap_or_default(),
            line: line.map(|l| l.line).unwrap_or(0),
        }
    }

    /// The frame of a return address: the call instruction is the byte before it.
    pub fn caller_frame(&self, return_pc: u64) -> Frame {
        self.frame(return_pc.saturating_sub(1))
    }
}
