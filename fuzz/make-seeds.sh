#!/bin/sh
# Seeds fuzz/corpus/<target>/ with sections of real Go binaries: the `inline` fixture as the
# test suite builds it (run `cargo test -p gotrace-tests --test symbols` first) for Go 1.19 and
# 1.27, the oldest and newest layouts. Usage: fuzz/make-seeds.sh
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
fixtures=$root/target/fixtures
corpus=$root/fuzz/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$corpus/pclntab" "$corpus/buildinfo" "$corpus/dwarf" "$corpus/binary"
for go in go1.19 go1.27.3; do
    for variant in default stripped-pie; do
        exe=$fixtures/$go/$variant/inline
        [ -f "$exe" ] || { echo "missing $exe: build the fixtures first" >&2; exit 1; }
        name=$go-$variant
        for s in .gopclntab .data.rel.ro.gopclntab; do
            objcopy -O binary --only-section=$s "$exe" "$tmp/pcln" 2>/dev/null || true
            [ -s "$tmp/pcln" ] && cp "$tmp/pcln" "$corpus/pclntab/$name"
        done
        objcopy -O binary --only-section=.go.buildinfo "$exe" "$corpus/buildinfo/$name"
        cp "$exe" "$corpus/binary/$name"
    done
    # DWARF: the decompressed sections as [u32 length][bytes] records, in the order of
    # fuzz_targets/dwarf.rs.
    objcopy --decompress-debug-sections "$fixtures/$go/default/inline" "$tmp/dw"
    python3 - "$tmp/dw" "$corpus/dwarf/$go" <<'PY'
import struct, subprocess, sys, tempfile, os
names = [".debug_abbrev", ".debug_info", ".debug_line", ".debug_str", ".debug_ranges",
         ".debug_rnglists", ".debug_aranges", ".debug_line_str", ".debug_addr",
         ".debug_str_offsets", ".debug_loc", ".debug_loclists"]
out = b""
for n in names:
    with tempfile.NamedTemporaryFile() as t:
        subprocess.run(["objcopy", "--dump-section", n + "=" + t.name, sys.argv[1],
                        os.devnull], check=False, stderr=subprocess.DEVNULL)
        data = open(t.name, "rb").read()
    out += struct.pack("<I", len(data)) + data
out += struct.pack("<QQ", 0x401000, 0x402000)
open(sys.argv[2], "wb").write(out)
PY
done
# Small DWARF seeds (fast to mutate) from a C program with inlined calls, in DWARF 4 and 5.
mkdir -p "$corpus/dwarf-small"
cat > "$tmp/inl.c" <<'C'
static inline int leaf(int x) { return x * 3 + 1; }
static inline int mid(int x) { return leaf(x) + leaf(x + 1); }
int top(int x) { return mid(x) * 2; }
int main(int argc, char **argv) { (void)argv; return top(argc); }
C
for v in 4 5; do
    gcc -O2 -g -gdwarf-$v -o "$tmp/inl$v" "$tmp/inl.c"
    python3 - "$tmp/inl$v" "$corpus/dwarf-small/c-dwarf$v" <<'PY'
import struct, subprocess, sys, tempfile, os
names = [".debug_abbrev", ".debug_info", ".debug_line", ".debug_str", ".debug_ranges",
         ".debug_rnglists", ".debug_aranges", ".debug_line_str", ".debug_addr",
         ".debug_str_offsets", ".debug_loc", ".debug_loclists"]
out = b""
for n in names:
    with tempfile.NamedTemporaryFile() as t:
        subprocess.run(["objcopy", "--dump-section", n + "=" + t.name, sys.argv[1],
                        os.devnull], check=False, stderr=subprocess.DEVNULL)
        data = open(t.name, "rb").read()
    out += struct.pack("<I", len(data)) + data
out += struct.pack("<QQQQ", 0x1040, 0x1050, 0x1130, 0x1140)
open(sys.argv[2], "wb").write(out)
PY
done
ls -la "$corpus"/*
