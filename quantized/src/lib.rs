//! Products with a GGUF file's quantized weights (Q4_1 and Q8_0) as llama.cpp computes them
//! on a CPU: the activations are quantized to 8 bits the way ggml does (scale from the
//! block's largest magnitude, halves rounded to even; for Q4_1 the block's sum scaled once
//! and kept in f16), and each output is one block-wise dot product, in AVX2
//! where the CPU has it. candle's own Q4_1 product has no SIMD path and rounds the block
//! sums twice; this one follows the reference's numbers and runs at its speed. Beside them,
//! ggml's own exponential ([`exp`]), which softmax and SiLU use there, and the orders in
//! which it sums attention's f16 products ([`sums`]).
//!
//! The one crate of the workspace that needs `unsafe`: AVX2 intrinsics, called only after
//! the CPU is checked for them, on loads of exactly the bytes a block holds.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod exp;
pub mod sums;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Result, Tensor};
use half::f16;
use rayon::prelude::*;

/// Values per block, in both formats.
const BLOCK: usize = 32;

/// A Q4_1 block, scale and minimum widened to f32: `w = d * q + m`.
#[derive(Clone, Copy)]
struct Q41 {
    d: f32,
    m: f32,
    /// Value `j` in the low nibble of byte `j`, value `j + 16` in its high nibble.
    qs: [u8; 16],
}

/// A Q8_0 block (weights or activations): `v = d * q`; for activations against Q4_1,
/// `s = d * Σq` too. Scales are f16 values, widened.
#[derive(Clone, Copy)]
struct Q8 {
    d: f32,
    s: f32,
    qs: [i8; BLOCK],
}

enum Blocks {
    Q41(Vec<Q41>),
    Q80(Vec<Q8>),
}

/// A `(rows, columns)` quantized matrix, applied as `x · Wᵀ`.
pub struct QuantizedMatrix {
    blocks: Blocks,
    rows: usize,
    columns: usize,
}

/// Output rows one thread takes at a time, for one input (fewer for more).
const ROWS_PER_TASK: usize = 64;

fn widen(low: u8, high: u8) -> f32 {
    f16::from_le_bytes([low, high]).to_f32()
}

impl QuantizedMatrix {
    /// The matrix of a Q4_1 or Q8_0 tensor; `None` for any other type.
    pub fn of(tensor: &QTensor) -> Result<Option<Self>> {
        let (rows, columns) = tensor.shape().dims2()?;
        if !columns.is_multiple_of(BLOCK) {
            return Ok(None);
        }
        let bytes = tensor.data()?;
        let blocks = match tensor.dtype() {
            GgmlDType::Q4_1 => Blocks::Q41(
                bytes
                    .chunks_exact(20)
                    .map(|raw| Q41 {
                        d: widen(raw[0], raw[1]),
                        m: widen(raw[2], raw[3]),
                        qs: raw[4..20].try_into().expect("16 bytes"),
                    })
                    .collect(),
            ),
            GgmlDType::Q8_0 => Blocks::Q80(
                bytes
                    .chunks_exact(34)
                    .map(|raw| Q8 {
                        d: widen(raw[0], raw[1]),
                        s: 0.,
                        qs: std::array::from_fn(|i| raw[2 + i] as i8),
                    })
                    .collect(),
            ),
            _ => return Ok(None),
        };
        let count = match &blocks {
            Blocks::Q41(blocks) => blocks.len(),
            Blocks::Q80(blocks) => blocks.len(),
        };
        if count != rows * columns / BLOCK {
            candle_core::bail!("{count} blocks for a {rows}×{columns} matrix");
        }
        Ok(Some(Self { blocks, rows, columns }))
    }

    /// Rows (outputs) of the matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (inputs) of the matrix.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// The matrices' rows one after the other, as one matrix (queries, keys and values
    /// applied in one pass); `None` unless all have the same type and columns.
    pub fn stack(parts: Vec<QuantizedMatrix>) -> Option<Self> {
        let columns = parts.first()?.columns;
        let mut rows = 0;
        let mut stacked: Option<Blocks> = None;
        for part in parts {
            if part.columns != columns {
                return None;
            }
            rows += part.rows;
            stacked = Some(match (stacked, part.blocks) {
                (None, blocks) => blocks,
                (Some(Blocks::Q41(mut all)), Blocks::Q41(more)) => {
                    all.extend(more);
                    Blocks::Q41(all)
                }
                (Some(Blocks::Q80(mut all)), Blocks::Q80(more)) => {
                    all.extend(more);
                    Blocks::Q80(all)
                }
                _ => return None,
            });
        }
        Some(Self { blocks: stacked?, rows, columns })
    }

    /// Row `row` of the matrix, dequantized into `out` (`columns` long), as ggml's
    /// `get_rows` does: an embedding lookup.
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        let per_row = self.columns / BLOCK;
        let range = row * per_row..(row + 1) * per_row;
        let half = BLOCK / 2;
        match &self.blocks {
            Blocks::Q41(blocks) => {
                for (block, out) in blocks[range].iter().zip(out.chunks_exact_mut(BLOCK)) {
                    for j in 0..half {
                        out[j] = f32::from(block.qs[j] & 0x0F) * block.d + block.m;
                        out[j + half] = f32::from(block.qs[j] >> 4) * block.d + block.m;
                    }
                }
            }
            Blocks::Q80(blocks) => {
                for (block, out) in blocks[range].iter().zip(out.chunks_exact_mut(BLOCK)) {
                    for (value, q) in out.iter_mut().zip(block.qs) {
                        *value = f32::from(q) * block.d;
                    }
                }
            }
        }
    }

    /// `x · Wᵀ` for `x` of `(n, columns)` f32: `(n, rows)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, columns) = x.dims2()?;
        if columns != self.columns {
            candle_core::bail!("{columns} columns against a matrix of {}", self.columns);
        }
        let x: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let mut out = vec![0f32; self.rows * n];
        self.apply(&x, &mut out);
        Tensor::from_vec(out, (n, self.rows), &Device::Cpu)
    }

    /// `out = x · Wᵀ` on plain rows: `x` holds `n` rows of `columns`, `out` `n` rows of
    /// `rows`. Each weight row is read once for all `n` inputs.
    pub fn apply(&self, x: &[f32], out: &mut [f32]) {
        let n = x.len() / self.columns;
        assert_eq!(x.len(), n * self.columns, "the input is whole rows of {} columns", self.columns);
        assert_eq!(out.len(), n * self.rows, "the output has room for {n} rows of {}", self.rows);
        let per_row = self.columns / BLOCK;
        let activations = quantize_all(x);
        let kernel = Kernel::best();
        let inputs = kernel.inputs(activations, per_row);
        // Over the weights' rows, `n` products each (one row per input when n is 1; else
        // transposed after).
        let mut by_row = if n == 1 { Vec::new() } else { vec![0f32; self.rows * n] };
        let target = if n == 1 { &mut *out } else { by_row.as_mut_slice() };
        // More inputs, fewer rows a task; several inputs cost less each (they share a
        // block's unpacking), so a task of eight takes a quarter of the rows, not an eighth.
        let rows_per_task = (4 * ROWS_PER_TASK / n).clamp(4, ROWS_PER_TASK);
        target.par_chunks_mut(rows_per_task * n).enumerate().for_each(|(task, chunk)| {
            let first = task * rows_per_task;
            let rows = first * per_row..(first + chunk.len() / n) * per_row;
            match &self.blocks {
                Blocks::Q41(blocks) => kernel.rows_q41(&blocks[rows], &inputs, per_row, chunk),
                Blocks::Q80(blocks) => kernel.rows_q80(&blocks[rows], &inputs, per_row, chunk),
            }
        });
        if n > 1 {
            // Input by input, each writing its own row in order.
            out.par_chunks_mut(self.rows).enumerate().for_each(|(b, out)| {
                for (value, values) in out.iter_mut().zip(by_row.chunks_exact(n)) {
                    *value = values[b];
                }
            });
        }
    }
}

/// The dot products of the best instructions this CPU has, chosen once.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kernel {
    Plain,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX2 with AVX-VNNI's byte dot product (`vpdpbusd`), as ggml uses it where built for
    /// such a CPU: the same integer sums in one instruction instead of two.
    #[cfg(target_arch = "x86_64")]
    Vnni,
    /// [`Kernel::Vnni`] for one input; for several, two inputs to a 512-bit register
    /// ([`avx512`]): the same bits in about half the instructions.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// A product's quantized inputs, as its kernel reads them.
struct Inputs {
    blocks: Vec<Q8>,
    /// [`Kernel::Avx512`]'s layout of several inputs (empty otherwise).
    #[cfg(target_arch = "x86_64")]
    groups: Vec<avx512::Group>,
}

impl Kernel {
    fn best() -> Self {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::is_x86_feature_detected as has;
                let avx2 = has!("avx2") && has!("fma");
                let avx512 = has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vnni");
                if avx2 && has!("avxvnni") && avx512 && std::env::var_os("INFERPUSH_NO_AVX512").is_none() {
                    return Kernel::Avx512;
                }
                if avx2 && has!("avxvnni") {
                    return Kernel::Vnni;
                }
                if avx2 {
                    return Kernel::Avx2;
                }
            }
            Kernel::Plain
        })
    }

    /// Every kernel this CPU can run, for the tests.
    #[cfg(test)]
    fn available() -> Vec<Self> {
        let mut all = vec![Kernel::Plain];
        #[cfg(target_arch = "x86_64")]
        {
            let best = Kernel::best();
            if best != Kernel::Plain {
                all.push(Kernel::Avx2);
            }
            if matches!(best, Kernel::Vnni | Kernel::Avx512) {
                all.push(Kernel::Vnni);
            }
            if best == Kernel::Avx512 {
                all.push(Kernel::Avx512);
            }
        }
        all
    }

    /// `blocks` (`per_row` to an input) laid out for this kernel.
    fn inputs(self, blocks: Vec<Q8>, per_row: usize) -> Inputs {
        #[cfg(target_arch = "x86_64")]
        {
            let several = blocks.len() > per_row;
            let groups =
                if self == Kernel::Avx512 && several { avx512::groups(&blocks, per_row) } else { Vec::new() };
            Inputs { blocks, groups }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = per_row;
            Inputs { blocks }
        }
    }

    /// `out[r * n + b]` = row `r` of `weights` (rows of `per_row` blocks) · input `b`.
    fn rows_q41(self, weights: &[Q41], x: &Inputs, per_row: usize, out: &mut [f32]) {
        match self {
            Kernel::Plain => plain::rows(weights, &x.blocks, per_row, out, plain::dot_q41),
            // SAFETY: Kernel::best chose these only on a CPU with their features.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { avx2::rows_q41(weights, &x.blocks, per_row, out) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni => unsafe { vnni::rows_q41(weights, &x.blocks, per_row, out) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 if x.groups.is_empty() => unsafe {
                vnni::rows_q41(weights, &x.blocks, per_row, out)
            },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { avx512::rows_q41(weights, &x.groups, per_row, out) },
        }
    }

    fn rows_q80(self, weights: &[Q8], x: &Inputs, per_row: usize, out: &mut [f32]) {
        match self {
            Kernel::Plain => plain::rows(weights, &x.blocks, per_row, out, plain::dot_q80),
            // SAFETY: Kernel::best chose these only on a CPU with their features.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { avx2::rows_q80(weights, &x.blocks, per_row, out) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni => unsafe { vnni::rows_q80(weights, &x.blocks, per_row, out) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 if x.groups.is_empty() => unsafe {
                vnni::rows_q80(weights, &x.blocks, per_row, out)
            },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { avx512::rows_q80(weights, &x.groups, per_row, out) },
        }
    }
}

/// [`quantize`] of every block of `x`, its loops compiled for AVX-512 where the CPU has
/// it (the same operations on each value: the same bits).
fn quantize_all(x: &[f32]) -> Vec<Q8> {
    #[cfg(target_arch = "x86_64")]
    if Kernel::best() == Kernel::Avx512 {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
        fn wide(x: &[f32]) -> Vec<Q8> {
            x.chunks_exact(BLOCK).map(quantize).collect()
        }
        // SAFETY: Kernel::best chose AVX-512 only on a CPU with these features.
        return unsafe { wide(x) };
    }
    x.chunks_exact(BLOCK).map(quantize).collect()
}

/// ggml's `quantize_row_q8_1` for AVX2, which `quantize_row_q8_0` equals but for `s`:
/// `d = max|x| / 127`, `q = x · 127/max|x|` rounded half to even (`_mm256_round_ps`),
/// `s = f16(d · Σq)`. Checked against llama.cpp's own tensors (read through its evaluation
/// callback, layer by layer): `1/d` instead of `127/max|x|`, or halves away from zero, each
/// give a few blocks other values, and the next layer's output with them.
#[inline(always)]
fn quantize(x: &[f32]) -> Q8 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.;
    let id = if amax != 0. { 127. / amax } else { 0. };
    let mut qs = [0i8; BLOCK];
    let mut sum = 0i32;
    for (q, v) in qs.iter_mut().zip(x) {
        let rounded = round_half_even(v * id);
        *q = rounded as i8;
        sum += rounded;
    }
    Q8 { d: f16::from_f32(d).to_f32(), s: f16::from_f32(d * sum as f32).to_f32(), qs }
}

/// `v` rounded to the nearest integer, halves to even, for |v| ≤ 127: adding 1.5 · 2^23
/// leaves no fraction bits, so the addition itself rounds (to even, as every f32 addition
/// does), without `roundevenf`'s library call.
fn round_half_even(v: f32) -> i32 {
    const SHIFT: f32 = 12_582_912.;
    ((v + SHIFT) - SHIFT) as i32
}

/// The sum of eight lanes as ggml's AVX2 `hsum_float_8` adds them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn hsum(acc: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let mut res = _mm_add_ps(_mm256_extractf128_ps(acc, 1), _mm256_castps256_ps128(acc));
    res = _mm_add_ps(res, _mm_movehl_ps(res, res));
    res = _mm_add_ss(res, _mm_movehdup_ps(res));
    _mm_cvtss_f32(res)
}

/// Block-wise products in plain Rust: what the SIMD kernels compute, for any CPU.
mod plain {
    use super::{BLOCK, Q8, Q41};

    pub(super) fn rows<W>(
        weights: &[W],
        x: &[Q8],
        per_row: usize,
        out: &mut [f32],
        dot: fn(&[W], &[Q8]) -> f32,
    ) {
        let n = x.len() / per_row;
        for (row, values) in weights.chunks_exact(per_row).zip(out.chunks_exact_mut(n)) {
            for (value, x) in values.iter_mut().zip(x.chunks_exact(per_row)) {
                *value = dot(row, x);
            }
        }
    }

    pub(super) fn dot_q41(weights: &[Q41], x: &[Q8]) -> f32 {
        weights
            .iter()
            .zip(x)
            .map(|(w, x)| {
                let integer: i32 = (0..BLOCK / 2)
                    .map(|j| {
                        i32::from(w.qs[j] & 0x0F) * i32::from(x.qs[j])
                            + i32::from(w.qs[j] >> 4) * i32::from(x.qs[j + BLOCK / 2])
                    })
                    .sum();
                integer as f32 * w.d * x.d + w.m * x.s
            })
            .sum()
    }

    pub(super) fn dot_q80(weights: &[Q8], x: &[Q8]) -> f32 {
        weights
            .iter()
            .zip(x)
            .map(|(w, x)| {
                let integer: i32 = w.qs.iter().zip(&x.qs).map(|(a, b)| i32::from(*a) * i32::from(*b)).sum();
                integer as f32 * w.d * x.d
            })
            .sum()
    }
}

/// ggml's `ggml_vec_dot_q4_1_q8_1` and `ggml_vec_dot_q8_0_q8_0` for AVX2, step for step, over
/// whole rows: `$module` with the target features `$features`, summing byte products by
/// `$pairs` (unsigned `a` by signed `b`, four at a time, as eight floats).
macro_rules! simd_kernels {
    ($module:ident, $features:literal, |$a:ident, $b:ident| $pairs:expr) => {
        #[cfg(target_arch = "x86_64")]
        mod $module {
            use std::arch::x86_64::*;

            use super::{Q8, Q41, hsum as sum};

            /// `out[r * n + b]` = row `r` · input `b`; four inputs at a time share
            /// each weight block's load and unpacking (each product is still summed exactly
            /// as one alone).
            #[target_feature(enable = $features)]
            pub(super) fn rows_q41(weights: &[Q41], x: &[Q8], per_row: usize, out: &mut [f32]) {
                let n = x.len() / per_row;
                for (row, values) in weights.chunks_exact(per_row).zip(out.chunks_exact_mut(n)) {
                    let mut b = 0;
                    while b + 4 <= n {
                        values[b..b + 4]
                            .copy_from_slice(&dots_q41::<4>(row, &x[b * per_row..(b + 4) * per_row]));
                        b += 4;
                    }
                    for (value, x) in values[b..].iter_mut().zip(x[b * per_row..].chunks_exact(per_row)) {
                        *value = dot_q41(row, x);
                    }
                }
            }

            #[target_feature(enable = $features)]
            pub(super) fn rows_q80(weights: &[Q8], x: &[Q8], per_row: usize, out: &mut [f32]) {
                let n = x.len() / per_row;
                for (row, values) in weights.chunks_exact(per_row).zip(out.chunks_exact_mut(n)) {
                    let mut b = 0;
                    while b + 4 <= n {
                        values[b..b + 4]
                            .copy_from_slice(&dots_q80::<4>(row, &x[b * per_row..(b + 4) * per_row]));
                        b += 4;
                    }
                    for (value, x) in values[b..].iter_mut().zip(x[b * per_row..].chunks_exact(per_row)) {
                        *value = dot_q80(row, x);
                    }
                }
            }

            /// [`dot_q41`] of one row with `N` inputs (`x` holds their rows one after another).
            #[target_feature(enable = $features)]
            #[inline]
            fn dots_q41<const N: usize>(weights: &[Q41], x: &[Q8]) -> [f32; N] {
                let per_row = weights.len();
                let mut acc = [_mm256_setzero_ps(); N];
                let mut mins = [0f32; N];
                let low = _mm256_set1_epi8(0x0F);
                for (i, w) in weights.iter().enumerate() {
                    // SAFETY: `w.qs` is 16 bytes: an unaligned load of exactly that.
                    let packed = unsafe { _mm_loadu_si128(w.qs.as_ptr().cast()) };
                    let nibbles = _mm256_and_si256(low, _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed));
                    let d = _mm256_set1_ps(w.d);
                    for k in 0..N {
                        let x = &x[k * per_row + i];
                        mins[k] += w.m * x.s;
                        let scale = _mm256_mul_ps(d, _mm256_set1_ps(x.d));
                        // SAFETY: `x.qs` is 32 bytes: an unaligned load of exactly that.
                        let activations = unsafe { _mm256_loadu_si256(x.qs.as_ptr().cast()) };
                        acc[k] = _mm256_fmadd_ps(scale, pairs(nibbles, activations), acc[k]);
                    }
                }
                std::array::from_fn(|k| sum(acc[k]) + mins[k])
            }

            /// [`dot_q80`] of one row with `N` inputs.
            #[target_feature(enable = $features)]
            #[inline]
            fn dots_q80<const N: usize>(weights: &[Q8], x: &[Q8]) -> [f32; N] {
                let per_row = weights.len();
                let mut acc = [_mm256_setzero_ps(); N];
                for (i, w) in weights.iter().enumerate() {
                    // SAFETY: `w.qs` is 32 bytes: an unaligned load of exactly that.
                    let a = unsafe { _mm256_loadu_si256(w.qs.as_ptr().cast()) };
                    let magnitude = _mm256_sign_epi8(a, a);
                    for k in 0..N {
                        let x = &x[k * per_row + i];
                        let scale = _mm256_set1_ps(w.d * x.d);
                        // SAFETY: `x.qs` is 32 bytes: an unaligned load of exactly that.
                        let b = unsafe { _mm256_loadu_si256(x.qs.as_ptr().cast()) };
                        acc[k] = _mm256_fmadd_ps(scale, pairs(magnitude, _mm256_sign_epi8(b, a)), acc[k]);
                    }
                }
                std::array::from_fn(|k| sum(acc[k]))
            }

            #[target_feature(enable = $features)]
            #[inline]
            fn dot_q41(weights: &[Q41], x: &[Q8]) -> f32 {
                let mut acc = _mm256_setzero_ps();
                let mut mins = 0f32;
                let low = _mm256_set1_epi8(0x0F);
                for (w, x) in weights.iter().zip(x) {
                    mins += w.m * x.s;
                    let scale = _mm256_mul_ps(_mm256_set1_ps(w.d), _mm256_set1_ps(x.d));
                    // SAFETY: `w.qs` is 16 bytes and `x.qs` 32: unaligned loads of exactly that.
                    let packed = unsafe { _mm_loadu_si128(w.qs.as_ptr().cast()) };
                    let nibbles = _mm256_and_si256(low, _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed));
                    let activations = unsafe { _mm256_loadu_si256(x.qs.as_ptr().cast()) };
                    acc = _mm256_fmadd_ps(scale, pairs(nibbles, activations), acc);
                }
                sum(acc) + mins
            }

            #[target_feature(enable = $features)]
            #[inline]
            fn dot_q80(weights: &[Q8], x: &[Q8]) -> f32 {
                let mut acc = _mm256_setzero_ps();
                for (w, x) in weights.iter().zip(x) {
                    let scale = _mm256_set1_ps(w.d * x.d);
                    // SAFETY: both `qs` are 32 bytes: unaligned loads of exactly that.
                    let a = unsafe { _mm256_loadu_si256(w.qs.as_ptr().cast()) };
                    let b = unsafe { _mm256_loadu_si256(x.qs.as_ptr().cast()) };
                    // |a| · (b with a's sign): the unsigned-by-signed product there is.
                    let products = pairs(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
                    acc = _mm256_fmadd_ps(scale, products, acc);
                }
                sum(acc)
            }

            #[target_feature(enable = $features)]
            #[inline]
            fn pairs($a: __m256i, $b: __m256i) -> __m256 {
                _mm256_cvtepi32_ps($pairs)
            }
        }
    };
}

simd_kernels!(avx2, "avx2,fma", |a, b| _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)));
simd_kernels!(vnni, "avx2,fma,avxvnni", |a, b| _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), a, b));

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(dtype: GgmlDType) -> (QuantizedMatrix, Tensor, QTensor) {
        let (rows, columns) = (70, 64);
        let weights: Vec<f32> = (0..rows * columns).map(|i| ((i * 37 % 101) as f32 - 50.) / 97.).collect();
        let tensor = Tensor::from_vec(weights, (rows, columns), &Device::Cpu).unwrap();
        let quantized = QTensor::quantize(&tensor, dtype).unwrap();
        let x = (0..13 * columns).map(|i| ((i * 13 % 29) as f32 - 14.) / 9.).collect();
        (
            QuantizedMatrix::of(&quantized).unwrap().unwrap(),
            Tensor::from_vec(x, (13, columns), &Device::Cpu).unwrap(),
            quantized,
        )
    }

    #[test]
    fn products_are_the_dequantized_weights_times_the_input_within_8_bit_rounding() {
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let (matrix, x, quantized) = matrix(dtype);
            let ours = matrix.forward(&x).unwrap().to_vec2::<f32>().unwrap();
            let dequantized = quantized.dequantize(&Device::Cpu).unwrap();
            let exact = x.matmul(&dequantized.t().unwrap()).unwrap().to_vec2::<f32>().unwrap();
            for (a, b) in ours.iter().flatten().zip(exact.iter().flatten()) {
                assert!((a - b).abs() < 0.03 * b.abs().max(1.), "{dtype:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn every_kernel_gives_the_plain_products() {
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let (matrix, x, _) = matrix(dtype);
            let activations: Vec<Q8> = x
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .chunks_exact(BLOCK)
                .map(quantize)
                .collect();
            let per_row = matrix.columns / BLOCK;
            let product = |kernel: Kernel, inputs: &[Q8]| {
                let n = inputs.len() / per_row;
                let inputs = kernel.inputs(inputs.to_vec(), per_row);
                let mut out = vec![0f32; matrix.rows * n];
                match &matrix.blocks {
                    Blocks::Q41(blocks) => kernel.rows_q41(blocks, &inputs, per_row, &mut out),
                    Blocks::Q80(blocks) => kernel.rows_q80(blocks, &inputs, per_row, &mut out),
                }
                out
            };
            let plain = product(Kernel::Plain, &activations);
            for kernel in Kernel::available() {
                let all = product(kernel, &activations);
                for (a, b) in all.iter().zip(&plain) {
                    assert!((a - b).abs() < 1e-4 * b.abs().max(1.), "{dtype:?} {kernel:?}: {a} vs {b}");
                }
                // However many inputs share a pass, each product is summed as one alone: the
                // same bits (13 inputs: a group of eight, then two pairs and a lone one).
                for n in [1, 2, 3, 8, 13] {
                    let some = product(kernel, &activations[..n * per_row]);
                    for b in 0..n {
                        let alone = product(kernel, &activations[b * per_row..(b + 1) * per_row]);
                        let column: Vec<f32> = some.chunks_exact(n).map(|values| values[b]).collect();
                        assert_eq!(column, alone, "{dtype:?} {kernel:?}: input {b} of {n}");
                    }
                }
            }
        }
    }

    #[test]
    fn rounding_is_to_nearest_with_halves_to_even() {
        for v in [0.5f32, -0.5, 1.5, 2.5, -2.5, 2.4999998, -126.5, 126.49999, 0.49999997, 3.0, -0.0, 127.0] {
            assert_eq!(round_half_even(v), v.round_ties_even() as i32, "{v}");
        }
    }

    #[test]
    fn stacked_matrices_give_their_products_side_by_side_and_rows_dequantize() {
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let (first, x, quantized) = matrix(dtype);
            let (second, _, _) = matrix(dtype);
            let x: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            let (mut one, mut both) = (vec![0.; 13 * 70], vec![0.; 13 * 140]);
            first.apply(&x, &mut one);
            let stacked = QuantizedMatrix::stack(vec![first, second]).unwrap();
            stacked.apply(&x, &mut both);
            for b in 0..13 {
                assert_eq!(&both[b * 140..b * 140 + 70], &one[b * 70..(b + 1) * 70]);
                assert_eq!(&both[b * 140 + 70..(b + 1) * 140], &one[b * 70..(b + 1) * 70]);
            }
            let mut row = vec![0.; 64];
            stacked.dequantize_row(71, &mut row);
            let exact = quantized.dequantize(&Device::Cpu).unwrap().get(1).unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(row, exact, "{dtype:?}");
        }
    }

    #[test]
    fn other_types_are_left_to_candle() {
        let tensor = Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(
            QuantizedMatrix::of(&QTensor::quantize(&tensor, GgmlDType::Q4_0).unwrap()).unwrap().is_none()
        );
    }
}
