//! Vector math for the native ops: a branch-free f32 exp (and the logistic function built on
//! it) that the compiler vectorizes over a loop, for the softmaxes and GELU (libm's scalar
//! `expf`/`tanhf` were a quarter of a training step), accurate to about 2 ulp (relative 2e-7),
//! arguments clamped to [-87.3, 88] (results from 1.2e-38 to 1.7e38), NaN kept; the fixed-order
//! 8-lane max; and [`widest!`], which compiles a hot loop for the widest vector unit the CPU has.

/// Defines a function whose body is compiled three times, for AVX-512, for AVX2 and for the
/// x86-64 baseline (SSE2), and runs the widest the CPU has (other targets: the baseline). The
/// same IEEE operations run in the same order on every path (Rust never fuses a multiply and
/// an add, and the reductions keep explicit lanes), so the bits do not depend on the path:
/// only the speed does. Helpers the body calls must be `#[inline(always)]`.
macro_rules! widest {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident: $t:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($a: $t),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                fn avx512($($a: $t),*) $(-> $ret)? $body
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($a: $t),*) $(-> $ret)? $body
                let widest = $crate::gpu::ops::native::math::WIDEST
                    .load(std::sync::atomic::Ordering::Relaxed);
                if widest >= 2 && std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the feature.
                    return unsafe { avx512($($a),*) };
                }
                if widest >= 1 && std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has the feature.
                    return unsafe { avx2($($a),*) };
                }
            }
            $body
        }
    };
}
pub(crate) use widest;

/// The widest path [`widest!`] may take: 2 AVX-512, 1 AVX2, 0 the baseline. Only tests lower
/// it, to check that every path gives the same bits.
pub(crate) static WIDEST: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(2);

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split so that n·LN2_HI is exact for |n| ≤ 128 (Cody–Waite).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5·2^23: adding it rounds to an integer held in the low mantissa bits.
const ROUND: f32 = 12_582_912.0;
const ROUND_BITS: u32 = 0x4B40_0000;

/// e^x.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // Comparisons (not f32::max/min) so that NaN passes through.
    let x = if x < -87.336_55 { -87.336_55 } else { x };
    let x = if x > 88.0 { 88.0 } else { x };
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Cephes expf's polynomial for e^r on |r| ≤ ln2/2.
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    p = p * r * r + r + 1.0;
    // 2^n from n's bits in t: the exponent field of (n + 127).
    let scale = f32::from_bits(t.to_bits().wrapping_sub(ROUND_BITS).wrapping_add(127) << 23);
    p * scale
}

/// The logistic function 1/(1 + e^(−x)).
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// The largest element (NaN elements are skipped, as `f32::max` skips them), in 8 lanes.
#[inline(always)]
pub(crate) fn max(a: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; 8];
    let c = a.chunks_exact(8);
    let tail = c.remainder();
    for ch in c {
        for l in 0..8 {
            m[l] = if ch[l] > m[l] { ch[l] } else { m[l] };
        }
    }
    let mut r = tail.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in m {
        r = r.max(v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_libm_and_keeps_its_edges() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(-1e30) > 0.0 && exp(-1e30) < 2e-38);
        assert!(exp(1e30).is_finite() && exp(1e30) > 1e38);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
        assert_eq!(max(&[1.0, f32::NAN, 3.0, -1.0]), 3.0);
        let v: Vec<f32> = (0..37).map(|i| ((i * 17) % 23) as f32).collect();
        assert_eq!(max(&v), 22.0);
    }
}
