//! The seeded generator behind weight initialisation, batch sampling and the pack's shuffle: splitmix64 and Marsaglia's polar form of
//! Box–Muller, in f64 using only +, −, ×, ÷ and √ (IEEE-exact, so every machine gives the same
//! bits; the platform's `ln` is not used, a series is).

/// splitmix64 (Steele, Lea, Flood 2014).
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in 0..n (n > 0), by multiply-shift (no modulo bias worth naming).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in [−1, 1), a multiple of 2⁻⁵².
    pub fn uniform_pm1(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 52) as f64) - 1.0
    }
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Standard normal samples from the stream of (seed, index).
pub struct Normal {
    rng: SplitMix64,
    spare: Option<f64>,
}

impl Normal {
    /// The stream for one tensor: its draws depend only on the seed and the tensor's index.
    pub fn new(seed: u64, index: u64) -> Self {
        let state = mix64(seed) ^ mix64(index.wrapping_add(0x5851_f42d_4c95_7f2d));
        Self {
            rng: SplitMix64(state),
            spare: None,
        }
    }

    /// One N(0, 1) sample.
    pub fn sample(&mut self) -> f64 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        loop {
            let u = self.rng.uniform_pm1();
            let v = self.rng.uniform_pm1();
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let f = (-2.0 * ln(s) / s).sqrt();
                self.spare = Some(v * f);
                return u * f;
            }
        }
    }
}

/// Natural logarithm of a positive normal f64 from exact operations: s = m·2^e with
/// m in [√½, √2), ln m = 2·atanh(t), t = (m−1)/(m+1), |t| ≤ 0.172 (a fixed 14-term series).
pub fn ln(x: f64) -> f64 {
    debug_assert!(x > 0.0 && x.is_normal());
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let mut sum = 0.0;
    for k in (0..14).rev() {
        sum = sum * t2 + 1.0 / (2 * k + 1) as f64;
    }
    e as f64 * std::f64::consts::LN_2 + 2.0 * t * sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_series_logarithm_matches_the_platform_one() {
        for x in [
            1e-30, 1e-5, 0.1, 0.5, 0.70, 0.72, 0.9999, 1.0, 1.40, 1.42, 2.0, 1e10,
        ] {
            assert!(
                (ln(x) - x.ln()).abs() <= 4e-16 * x.ln().abs().max(1.0),
                "{x}"
            );
        }
    }

    #[test]
    fn normal_samples_have_unit_variance() {
        let mut n = Normal::new(1, 2);
        let xs: Vec<f64> = (0..100_000).map(|_| n.sample()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
    }
}
