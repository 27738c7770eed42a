"""Audit the built extension's machine code for kernels that do not run at their SIMD level.

Every kernel runs inside ``simd::run_avx512`` / ``simd::run_avx2`` (``#[target_feature]``
trampolines), so only what is inlined into them is compiled for AVX-512 / AVX2; a function they
call is compiled for the x86-64 baseline (SSE2) unless it has its own target features. This
script disassembles the extension (binutils ``objdump`` and ``readelf``) and prints:

* every function called, directly or further down, from the trampolines (calls through the
  GOT and through registers resolved), with how many trampolines reach it, its instruction and
  loop count and its 512/256-bit register use; panics, allocation and formatting are left out.
  A callee with loops and no wide registers is a hot loop running at the baseline.
* the trampolines whose code holds no 512-bit (``run_avx512``) or 256-bit (``run_avx2``)
  register at all: a kernel inlined but left scalar. Exit status 1 if there is any.

    python tools/simd_audit.py                    # the installed ferroptim._native
    python tools/simd_audit.py path/to/_native.abi3.so

Symbols of a default build carry hashes, not type parameters; to see which kernel each
trampoline runs, build with ``RUSTFLAGS="-C symbol-mangling-version=v0"`` and audit that.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass, field

#: callees that are error, allocation or start-up paths, not data loops
COLD = re.compile(
    r"panic|slice_index_fail|_fail\b|alloc|fmt|unwind|backtrace|abort|std_detect|OnceLock"
    r"|once::|is_supported|simd::level|ext:(memcpy|memset|memmove|malloc|free|realloc)"
)
TRAMPOLINE = re.compile(r"simd::run_avx(512|2)\b")
HEADER = re.compile(r"^([0-9a-f]+) <(.*)>:$")
INSN = re.compile(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$")
RIP_LOAD = re.compile(r"(r\w+),(?:QWORD PTR )?\[rip\+0x[0-9a-f]+\]\s+# ([0-9a-f]+)")


@dataclass
class Function:
    name: str
    start: int
    insns: list[tuple[int, str, str]] = field(default_factory=list)

    def wide(self, register: str) -> int:
        return sum(register in args for _, _, args in self.insns)

    def loops(self) -> int:
        """Backward jumps inside the function."""
        count = 0
        for at, op, args in self.insns:
            target = re.match(r"([0-9a-f]+) <", args)
            if op.startswith("j") and target and self.start <= int(target.group(1), 16) <= at:
                count += 1
        return count


def disassemble(path: str) -> dict[int, Function]:
    out = subprocess.run(
        ["objdump", "-d", "-C", "--no-show-raw-insn", "-M", "intel", path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    functions: dict[int, Function] = {}
    current = None
    for line in out.splitlines():
        if m := HEADER.match(line):
            current = functions.setdefault(int(m.group(1), 16), Function(m.group(2), 0))
            current.start = int(m.group(1), 16)
        elif current is not None and (m := INSN.match(line)):
            current.insns.append((int(m.group(1), 16), m.group(2), m.group(3)))
    return functions


def got_entries(path: str) -> dict[int, int | str]:
    """GOT slot address -> the function address it holds, or ``ext:<symbol>``."""
    out = subprocess.run(["readelf", "-rW", path], capture_output=True, text=True, check=True)
    slots: dict[int, int | str] = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "R_X86_64_RELATIVE":
            slots[int(parts[0], 16)] = int(parts[3], 16)
        elif len(parts) >= 5 and parts[2] in ("R_X86_64_GLOB_DAT", "R_X86_64_JUMP_SLOT"):
            slots[int(parts[0], 16)] = "ext:" + parts[4]
    return slots


def callees(fn: Function, got: dict[int, int | str]) -> list[int | str]:
    """Targets of ``fn``'s calls: direct, through a GOT slot, or through a register loaded from
    one (``mov reg, [rip + slot]`` earlier in the function)."""
    registers: dict[str, int | str] = {}
    out: list[int | str] = []
    for _, op, args in fn.insns:
        if op in ("mov", "lea") and (m := RIP_LOAD.match(args)):
            address = int(m.group(2), 16)
            registers[m.group(1)] = got.get(address, address) if op == "mov" else address
        if op != "call":
            continue
        if m := re.match(r"([0-9a-f]+) <", args):
            out.append(int(m.group(1), 16))
        elif m := re.match(r"QWORD PTR \[rip\+0x[0-9a-f]+\]\s+# ([0-9a-f]+)", args):
            out.append(got.get(int(m.group(1), 16), "unresolved GOT call"))
        elif m := re.fullmatch(r"(r\w+)", args):
            out.append(registers.get(m.group(1), f"unresolved call {args}"))
        else:
            out.append(f"indirect call {args}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("library", nargs="?", help="the extension (default: the installed one)")
    args = parser.parse_args()
    path = args.library
    if path is None:
        spec = importlib.util.find_spec("ferroptim._native")
        if spec is None or spec.origin is None:
            parser.error("ferroptim._native is not installed; name the library")
        path = spec.origin
    functions = disassemble(path)
    got = got_entries(path)
    trampolines = [f for f in functions.values() if TRAMPOLINE.search(f.name)]
    reached: dict[str, set[int]] = collections.defaultdict(set)
    for top in trampolines:
        seen: set[int | str] = set()
        stack = [top]
        while stack:
            for target in callees(stack.pop(), got):
                name = functions[target].name if target in functions else str(target)
                if target in seen or COLD.search(name):
                    continue
                seen.add(target)
                if isinstance(target, int) and target in functions:
                    fn = functions[target]
                    name += (
                        f"  [{len(fn.insns)} instructions, {fn.loops()} loops,"
                        f" zmm {fn.wide('zmm')}, ymm {fn.wide('ymm')}]"
                    )
                    stack.append(fn)
                reached[name].add(top.start)
    n512 = sum("run_avx512" in f.name for f in trampolines)
    print(f"{path}: {n512} run_avx512 and {len(trampolines) - n512} run_avx2 monomorphizations")
    print("functions they call (trampolines reaching each):")
    for name, tops in sorted(reached.items()):
        print(f"  {len(tops):5d}  {name}")
    scalar = [f for f in trampolines if f.wide("zmm" if "run_avx512" in f.name else "ymm") == 0]
    print(f"trampolines without a register of their level's width: {len(scalar)}")
    for f in scalar:
        print(f"  {f.name}  [{len(f.insns)} instructions]")
    return 1 if scalar else 0


if __name__ == "__main__":
    sys.exit(main())
