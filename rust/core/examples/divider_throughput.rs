//! Throughput of the x86 instructions that bound the compute-heavy optimizers (Adam, RMSprop,
//! Adagrad, NAdam, RAdam: one `sqrt` and one division per element; Adadelta: two and one):
//! `vsqrtps`, `vdivps` and, for scale, `vaddps`, at 256 and 512 bits, on independent registers so
//! only throughput counts. Run with
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

    /// 8 independent instructions per iteration into registers 0-7, all reading register 8
    /// (a normal float): `$a` into the even registers, `$b` into the odd ones; `$sa`/`$sb` is
    /// the second source operand (empty for `vsqrtps`, which has one).
    macro_rules! timed {
        ($name:ident, $feature:literal, $r:literal, $a:literal, $sa:literal, $b:literal, $sb:literal) => {
            #[target_feature(enable = $feature)]
            unsafe fn $name(iters: u64) {
                asm!(
                    concat!("vpternlogd ", $r, "8, ", $r, "8, ", $r, "8, 0xff"),
                    concat!("vpsrld ", $r, "8, ", $r, "8, 2"),
                    "2:",
                    concat!($a, " ", $r, "0, ", $r, "8", $sa),
                    concat!($b, " ", $r, "1, ", $r, "8", $sb),
                    concat!($a, " ", $r, "2, ", $r, "8", $sa),
                    concat!($b, " ", $r, "3, ", $r, "8", $sb),
                    concat!($a, " ", $r, "4, ", $r, "8", $sa),
                    concat!($b, " ", $r, "5, ", $r, "8", $sb),
                    concat!($a, " ", $r, "6, ", $r, "8", $sa),
                    concat!($b, " ", $r, "7, ", $r, "8", $sb),
                    "dec {n}",
                    "jnz 2b",
                    n = inout(reg) iters => _,
                    out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                    out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _, out("xmm8") _,
                );
            }
        };
    }

    timed!(
        add_ymm,
        "avx512f,avx512vl",
        "ymm",
        "vaddps",
        ", ymm8",
        "vaddps",
        ", ymm8"
    );
    timed!(
        sqrt_ymm,
        "avx512f,avx512vl",
        "ymm",
        "vsqrtps",
        "",
        "vsqrtps",
        ""
    );
    timed!(
        div_ymm,
        "avx512f,avx512vl",
        "ymm",
        "vdivps",
        ", ymm8",
        "vdivps",
        ", ymm8"
    );
    // 4 vsqrtps and 4 vdivps: about the sum of their times if they share one unit.
    timed!(
        both_ymm,
        "avx512f,avx512vl",
        "ymm",
        "vsqrtps",
        "",
        "vdivps",
        ", ymm8"
    );
    timed!(add_zmm, "avx512f", "zmm", "vaddps", ", zmm8", "vaddps", ", zmm8");
    timed!(sqrt_zmm, "avx512f", "zmm", "vsqrtps", "", "vsqrtps", "");
    timed!(div_zmm, "avx512f", "zmm", "vdivps", ", zmm8", "vdivps", ", zmm8");
    timed!(both_zmm, "avx512f", "zmm", "vsqrtps", "", "vdivps", ", zmm8");

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
