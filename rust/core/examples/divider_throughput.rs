//! Throughput of the x86 instructions that bound the compute-heavy optimizers (Adam, RMSprop,
//! Adagrad, Adadelta, NAdam, RAdam: one `sqrt` and one division per element): `vsqrtps`,
//! `vdivps` and, for scale, `vaddps`, at 256 and 512 bits, on independent registers so only
//! throughput counts. Run with
//! `cargo run --release -p ferroptim-core --example divider_throughput`.
//!
//! Prints time per instruction and per float32 element (the minimum over many repeats, so other
//! load on the machine only adds repeats), and the ratio to `vaddps` of the same width: `vaddps`
//! issues two per cycle on current Intel and AMD cores, so the ratio over 2 is cycles per
//! instruction.

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::asm;
    use std::time::Instant;

    /// Instructions per timed loop iteration (8 independent registers).
    const PER_ITER: u64 = 8;
    const ITERS: u64 = 20_000;
    const REPEATS: usize = 300;

    /// 8 independent `$op` on ymm/zmm 0-7 per iteration, operand register 8.
    macro_rules! timed {
        ($name:ident, $feature:literal, $op:literal, $reg:literal) => {
            #[target_feature(enable = $feature)]
            unsafe fn $name(iters: u64) {
                asm!(
                    concat!("vxorps ", $reg, "8, ", $reg, "8, ", $reg, "8"),
                    concat!("vpternlogd ", $reg, "8, ", $reg, "8, ", $reg, "8, 0xff"),
                    concat!("vpsrld ", $reg, "8, ", $reg, "8, 2"),
                    "2:",
                    concat!($op, " ", $reg, "0, ", $reg, "8, ", $reg, "8"),
                    concat!($op, " ", $reg, "1, ", $reg, "8, ", $reg, "8"),
                    concat!($op, " ", $reg, "2, ", $reg, "8, ", $reg, "8"),
                    concat!($op, " ", $reg, "3, ", $reg, "8, ", $reg, "8"),
                    concat!($op, " ", $reg, "4, ", $reg, "8, ", $reg, "8"),
                    concat!($op, " ", $reg, "5, ", $reg, "8, ", $reg, "8"),
                    concat!($op, " ", $reg, "6, ", $reg, "8, ", $reg, "8"),
                    concat!($op, " ", $reg, "7, ", $reg, "8, ", $reg, "8"),
                    "dec {n}",
                    "jnz 2b",
                    n = inout(reg) iters => _,
                    out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                    out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _, out("xmm8") _,
                );
            }
        };
    }

    // vsqrtps takes one source; written with two operands as the others, it reads the last.
    timed!(add_ymm, "avx512f,avx512vl", "vaddps", "ymm");
    timed!(div_ymm, "avx512f,avx512vl", "vdivps", "ymm");
    timed!(add_zmm, "avx512f", "vaddps", "zmm");
    timed!(div_zmm, "avx512f", "vdivps", "zmm");

    #[target_feature(enable = "avx512f,avx512vl")]
    unsafe fn sqrt_ymm(iters: u64) {
        asm!(
            "vpcmpeqd ymm8, ymm8, ymm8",
            "vpsrld ymm8, ymm8, 2",
            "2:",
            "vsqrtps ymm0, ymm8", "vsqrtps ymm1, ymm8", "vsqrtps ymm2, ymm8", "vsqrtps ymm3, ymm8",
            "vsqrtps ymm4, ymm8", "vsqrtps ymm5, ymm8", "vsqrtps ymm6, ymm8", "vsqrtps ymm7, ymm8",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) iters => _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _, out("xmm8") _,
        );
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn sqrt_zmm(iters: u64) {
        asm!(
            "vpternlogd zmm8, zmm8, zmm8, 0xff",
            "vpsrld zmm8, zmm8, 2",
            "2:",
            "vsqrtps zmm0, zmm8", "vsqrtps zmm1, zmm8", "vsqrtps zmm2, zmm8", "vsqrtps zmm3, zmm8",
            "vsqrtps zmm4, zmm8", "vsqrtps zmm5, zmm8", "vsqrtps zmm6, zmm8", "vsqrtps zmm7, zmm8",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) iters => _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _, out("xmm8") _,
        );
    }

    /// 4 `vsqrtps` and 4 `vdivps` per iteration: about the sum of their times if they share
    /// one unit, about the larger one if not.
    macro_rules! sqrt_and_div {
        ($name:ident, $feature:literal, $r:literal) => {
            #[target_feature(enable = $feature)]
            unsafe fn $name(iters: u64) {
                asm!(
                    concat!("vpternlogd ", $r, "8, ", $r, "8, ", $r, "8, 0xff"),
                    concat!("vpsrld ", $r, "8, ", $r, "8, 2"),
                    "2:",
                    concat!("vsqrtps ", $r, "0, ", $r, "8"),
                    concat!("vdivps ", $r, "1, ", $r, "8, ", $r, "8"),
                    concat!("vsqrtps ", $r, "2, ", $r, "8"),
                    concat!("vdivps ", $r, "3, ", $r, "8, ", $r, "8"),
                    concat!("vsqrtps ", $r, "4, ", $r, "8"),
                    concat!("vdivps ", $r, "5, ", $r, "8, ", $r, "8"),
                    concat!("vsqrtps ", $r, "6, ", $r, "8"),
                    concat!("vdivps ", $r, "7, ", $r, "8, ", $r, "8"),
                    "dec {n}",
                    "jnz 2b",
                    n = inout(reg) iters => _,
                    out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                    out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _, out("xmm8") _,
                );
            }
        };
    }
    sqrt_and_div!(both_ymm, "avx512f,avx512vl", "ymm");
    sqrt_and_div!(both_zmm, "avx512f", "zmm");

    /// Nanoseconds per instruction: the fastest of [`REPEATS`] timed loops.
    fn ns_per_instruction(f: unsafe fn(u64)) -> f64 {
        (0..REPEATS)
            .map(|_| {
                let start = Instant::now();
                // Safety: callers check the target features first.
                unsafe { f(ITERS) };
                start.elapsed().as_nanos() as f64 / (ITERS * PER_ITER) as f64
            })
            .fold(f64::INFINITY, f64::min)
    }

    pub fn main() {
        if !std::arch::is_x86_feature_detected!("avx512vl") {
            println!("this example needs AVX-512 (vl) to time both widths; skipped");
            return;
        }
        println!("instruction        ns/instr  ns/float32  vs vaddps (same width)");
        for (width, lanes, add, ops) in [
            (
                "ymm",
                8.0,
                add_ymm as unsafe fn(u64),
                [
                    ("vsqrtps", sqrt_ymm as unsafe fn(u64)),
                    ("vdivps", div_ymm),
                    ("1:1 mix", both_ymm),
                ],
            ),
            (
                "zmm",
                16.0,
                add_zmm,
                [
                    ("vsqrtps", sqrt_zmm),
                    ("vdivps", div_zmm),
                    ("1:1 mix", both_zmm),
                ],
            ),
        ] {
            let base = ns_per_instruction(add);
            println!(
                "vaddps {width}      {base:9.3}  {:10.4}  1.0x",
                base / lanes
            );
            for (name, f) in ops {
                let t = ns_per_instruction(f);
                println!(
                    "{name} {width}{:pad$}{t:9.3}  {:10.4}  {:.1}x",
                    "",
                    t / lanes,
                    t / base,
                    pad = 11 - name.len()
                );
            }
        }
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    x86::main();
    #[cfg(not(target_arch = "x86_64"))]
    println!("x86-64 only");
}
