//! The AVX2 products of [`super`] for several inputs at once, two inputs to a 512-bit
//! register: the lower eight lanes hold one input's block and the upper eight the next's, so
//! each lane computes what the AVX2 kernel's lane computes for that input, in the same order,
//! and the results are the same bits; the instructions per block and input are about half.
//! The activations are laid out once per product ([`Group`]) so that each block of a pair
//! is one load, and the Q4_1 minimum terms of up to eight inputs are one vector.

use std::arch::x86_64::*;

use super::{Q8, Q41, hsum as sum};

/// Inputs a [`Group`] holds: four pairs.
pub(super) const GROUP: usize = 8;

/// Up to eight inputs' quantized activations, block by block.
pub(super) struct Group {
    /// Inputs held (the rest of a block's room is zeros).
    count: usize,
    blocks: Vec<GroupBlock>,
}

/// Block `i` of a group's inputs: input `2p + h`'s 32 values at `qs[p][32h..]`, its scale
/// in the eight floats at `d[p][8h..]`, its `s` at `s[2p + h]`.
#[repr(C, align(64))]
struct GroupBlock {
    qs: [[i8; 64]; 4],
    d: [[f32; 16]; 4],
    s: [f32; GROUP],
}

/// The groups of `x` (`x.len() / per_row` inputs of `per_row` blocks), eight inputs each.
pub(super) fn groups(x: &[Q8], per_row: usize) -> Vec<Group> {
    let n = x.len() / per_row;
    (0..n)
        .step_by(GROUP)
        .map(|first| {
            let count = (n - first).min(GROUP);
            let blocks = (0..per_row)
                .map(|i| {
                    let mut block = GroupBlock { qs: [[0; 64]; 4], d: [[0.; 16]; 4], s: [0.; GROUP] };
                    for k in 0..count {
                        let x = &x[(first + k) * per_row + i];
                        let (pair, half) = (k / 2, k % 2);
                        block.qs[pair][32 * half..32 * (half + 1)].copy_from_slice(&x.qs);
                        block.d[pair][8 * half..8 * (half + 1)].fill(x.d);
                        block.s[k] = x.s;
                    }
                    block
                })
                .collect();
            Group { count, blocks }
        })
        .collect()
}

/// `out[r * n + b]` = row `r` of `weights` · input `b` of `groups` (`n` inputs in all).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vnni,avx2,fma")]
pub(super) fn rows_q41(weights: &[Q41], groups: &[Group], per_row: usize, out: &mut [f32]) {
    let n: usize = groups.iter().map(|group| group.count).sum();
    for (row, values) in weights.chunks_exact(per_row).zip(out.chunks_exact_mut(n)) {
        for (group, values) in groups.iter().zip(values.chunks_mut(GROUP)) {
            match group.count.div_ceil(2) {
                4 => dots_q41::<4>(row, &group.blocks, values),
                3 => dots_q41::<3>(row, &group.blocks, values),
                2 => dots_q41::<2>(row, &group.blocks, values),
                _ => dots_q41::<1>(row, &group.blocks, values),
            }
        }
    }
}

/// As [`rows_q41`], for Q8_0 weights.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vnni,avx2,fma")]
pub(super) fn rows_q80(weights: &[Q8], groups: &[Group], per_row: usize, out: &mut [f32]) {
    let n: usize = groups.iter().map(|group| group.count).sum();
    for (row, values) in weights.chunks_exact(per_row).zip(out.chunks_exact_mut(n)) {
        for (group, values) in groups.iter().zip(values.chunks_mut(GROUP)) {
            match group.count.div_ceil(2) {
                4 => dots_q80::<4>(row, &group.blocks, values),
                3 => dots_q80::<3>(row, &group.blocks, values),
                2 => dots_q80::<2>(row, &group.blocks, values),
                _ => dots_q80::<1>(row, &group.blocks, values),
            }
        }
    }
}

/// One Q4_1 row with the `P` pairs of a group, into `out` (one value per input held).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vnni,avx2,fma")]
#[inline]
fn dots_q41<const P: usize>(weights: &[Q41], x: &[GroupBlock], out: &mut [f32]) {
    let mut acc = [_mm512_setzero_ps(); P];
    let mut mins = _mm256_setzero_ps();
    let low = _mm512_set1_epi8(0x0F);
    // The packed bytes in every 128-bit lane; lanes 1 and 3 shifted down four bits: the
    // block's values 0..16 then 16..32, twice.
    let shifts = _mm512_set_epi64(
        0x0004_0004_0004_0004,
        0x0004_0004_0004_0004,
        0,
        0,
        0x0004_0004_0004_0004,
        0x0004_0004_0004_0004,
        0,
        0,
    );
    for (w, x) in weights.iter().zip(x) {
        // SAFETY: `w.qs` is 16 bytes: an unaligned load of exactly that.
        let packed = _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128(w.qs.as_ptr().cast()) });
        let nibbles = _mm512_and_si512(_mm512_srlv_epi16(packed, shifts), low);
        let d = _mm512_set1_ps(w.d);
        // SAFETY: `x.s` is eight floats in a 64-byte aligned block.
        let s = unsafe { _mm256_load_ps(x.s.as_ptr()) };
        mins = _mm256_add_ps(mins, _mm256_mul_ps(_mm256_set1_ps(w.m), s));
        for (acc, (qs, scales)) in acc.iter_mut().zip(x.qs.iter().zip(&x.d)) {
            // SAFETY: each `qs` is 64 bytes and each `scales` 16 floats, 64-byte aligned.
            let (activations, scales) =
                unsafe { (_mm512_load_si512(qs.as_ptr().cast()), _mm512_load_ps(scales.as_ptr())) };
            let products =
                _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), nibbles, activations));
            *acc = _mm512_fmadd_ps(_mm512_mul_ps(d, scales), products, *acc);
        }
    }
    let mut mins_out = [0f32; GROUP];
    // SAFETY: eight floats into an array of eight.
    unsafe { _mm256_storeu_ps(mins_out.as_mut_ptr(), mins) };
    for (k, value) in out.iter_mut().enumerate() {
        *value = sum(half(acc[k / 2], k % 2)) + mins_out[k];
    }
}

/// One Q8_0 row with the `P` pairs of a group: |w| by x with w's sign, as the AVX2 kernel
/// (AVX-512 has no byte sign instruction: x is negated where w is negative; where w is
/// zero the product is zero either way).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vnni,avx2,fma")]
#[inline]
fn dots_q80<const P: usize>(weights: &[Q8], x: &[GroupBlock], out: &mut [f32]) {
    let mut acc = [_mm512_setzero_ps(); P];
    for (w, x) in weights.iter().zip(x) {
        // SAFETY: `w.qs` is 32 bytes: an unaligned load of exactly that.
        let a = _mm512_broadcast_i64x4(unsafe { _mm256_loadu_si256(w.qs.as_ptr().cast()) });
        let (magnitude, negative) = (_mm512_abs_epi8(a), _mm512_movepi8_mask(a));
        let d = _mm512_set1_ps(w.d);
        for (acc, (qs, scales)) in acc.iter_mut().zip(x.qs.iter().zip(&x.d)) {
            // SAFETY: each `qs` is 64 bytes and each `scales` 16 floats, 64-byte aligned.
            let (b, scales) =
                unsafe { (_mm512_load_si512(qs.as_ptr().cast()), _mm512_load_ps(scales.as_ptr())) };
            let signed = _mm512_mask_sub_epi8(b, negative, _mm512_setzero_si512(), b);
            let products = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), magnitude, signed));
            *acc = _mm512_fmadd_ps(_mm512_mul_ps(d, scales), products, *acc);
        }
    }
    for (k, value) in out.iter_mut().enumerate() {
        *value = sum(half(acc[k / 2], k % 2));
    }
}

/// The lower (`0`) or upper (`1`) eight lanes.
#[target_feature(enable = "avx512f,avx512dq")]
#[inline]
fn half(v: __m512, which: usize) -> __m256 {
    if which == 0 { _mm512_castps512_ps256(v) } else { _mm512_extractf32x8_ps::<1>(v) }
}
