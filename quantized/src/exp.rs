//! ggml's vectorised exponential (`ggml_v_expf`, its AVX-512 form, which llama.cpp built for
//! an AVX-512 CPU runs in softmax and SiLU) value by value: a polynomial in the remainder
//! after `n = round(x · log2 e)`, scaled by `2^n` in one rounding. It differs from the C
//! library's `expf` in the last bit about half the time, and a small model's attention
//! turns such a bit into another token a few dozen positions later.

/// Adding it to a float below 2^22 rounds that float to an integer (`0x1.8p23`).
const ROUND: f32 = 12_582_912.;
/// `0x1.715476p+0`.
const LOG2_E: f32 = f32::from_bits(0x3fb8_aa3b);
/// ln 2 in two parts, `0x1.62e4p-1` and `0x1.7f7d1cp-20`.
const LN2_HIGH: f32 = f32::from_bits(0x3f31_7200);
const LN2_LOW: f32 = f32::from_bits(0x35bf_be8e);
/// The polynomial's coefficients, highest degree first (`0x1.0e4020p-7` … `0x1.ffffecp-1`).
const P: [f32; 5] = [
    f32::from_bits(0x3c07_2010),
    f32::from_bits(0x3d2b_9f17),
    f32::from_bits(0x3e2a_af33),
    f32::from_bits(0x3eff_fedb),
    f32::from_bits(0x3f7f_fff6),
];

/// `ggml_v_expf(x)`, with ggml's fused multiply-adds where it has them. Inlined into
/// callers compiled with FMA, `mul_add` is one instruction; elsewhere a library call.
#[inline(always)]
fn expf(x: f32) -> f32 {
    let z = x.mul_add(LOG2_E, ROUND);
    let n = z - ROUND;
    if n.abs() > 192. {
        return if n <= 0. { 0. } else { f32::INFINITY };
    }
    let b = (-n).mul_add(LN2_LOW, (-n).mul_add(LN2_HIGH, x));
    let u = b * b;
    let j = P[0].mul_add(b, P[1]).mul_add(u, P[2].mul_add(b, P[3])).mul_add(u, P[4].mul_add(b, 1.));
    // `_mm512_scalef_ps`: j · 2^n rounded once (exact in f64; one rounding to f32). 2^n
    // for |n| ≤ 192 is a normal f64: its exponent bits alone.
    let power = f64::from_bits(((n as i64 + 1023) as u64) << 52);
    (f64::from(j) * power) as f32
}

/// `ggml_v_silu(gate) · up`: `gate / (1 + e^-gate) · up`, as `ggml_vec_swiglu_f32`.
#[inline(always)]
fn silu_times(gate: f32, up: f32) -> f32 {
    gate / (1. + expf(-gate)) * up
}

/// Each value replaced by `ggml_v_expf` of it.
pub fn exp_in_place(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has FMA.
        unsafe { fma::exp_in_place(values) };
        return;
    }
    for v in values {
        *v = expf(*v);
    }
}

/// `out[i] = silu(gate[i]) · up[i]`, as llama.cpp's fused SwiGLU.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has FMA.
        unsafe { fma::swiglu(gate, up, out) };
        return;
    }
    for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
        *o = silu_times(*g, *u);
    }
}

/// The same loops compiled with FMA, so `mul_add` is an instruction, not a call.
#[cfg(target_arch = "x86_64")]
mod fma {
    #[target_feature(enable = "fma")]
    pub(super) fn exp_in_place(values: &mut [f32]) {
        for v in values {
            *v = super::expf(*v);
        }
    }

    #[target_feature(enable = "fma")]
    pub(super) fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
        for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
            *o = super::silu_times(*g, *u);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_the_exponential_to_within_two_bits_and_ends_as_ggml_does() {
        for i in -8000..8000 {
            let x = i as f32 / 100.;
            let mut got = [x];
            exp_in_place(&mut got);
            let want = (x as f64).exp();
            if want < f32::MIN_POSITIVE as f64 {
                continue;
            }
            let ulp = f64::from(f32::EPSILON) * want;
            assert!((f64::from(got[0]) - want).abs() <= 2. * ulp, "exp({x}) = {} not {want}", got[0]);
        }
        let mut ends = [-200f32, f32::NEG_INFINITY, 200., 0.];
        exp_in_place(&mut ends);
        assert_eq!(ends, [0., 0., f32::INFINITY, 1.]);
    }

    #[test]
    fn the_fma_loop_and_the_plain_one_agree_bit_for_bit() {
        let gate: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.) / 37.).collect();
        let up: Vec<f32> = (0..1000).map(|i| (i as f32) / 91. - 3.).collect();
        let mut fast = vec![0f32; 1000];
        swiglu(&gate, &up, &mut fast);
        let plain: Vec<f32> = gate.iter().zip(&up).map(|(g, u)| silu_times(*g, *u)).collect();
        assert_eq!(fast, plain);
    }
}
