//! The llama network on a CPU over plain `f32` slices, as llama.cpp's CPU backend computes
//! it, number for number: every weight product through [`QuantizedMatrix`] (queries, keys
//! and values stacked into one matrix, the gate and up projections into another, so each is
//! one pass over the weights), and the rest as loops over the rows that round where ggml
//! rounds: RMS norm with its sum in f64 and epsilon added in f32, rope with ggml's angles
//! and its fused multiply-adds, attention over keys and values kept at f16 and summed in
//! the order ggml's f16 products sum ([`Order`]), softmax and SiLU with ggml's exponential.
//! A step of many sequences is one batch: the weights are read once per step, and
//! attention, the only part that depends on a sequence's past, runs per sequence and head,
//! in parallel.
//!
//! candle's tensors cost a few microseconds per operation, about sixty per block and
//! token: for a model this small that overhead, not arithmetic, set the speed.

use candle_core::Result;
use candle_core::quantized::QTensor;
use half::f16;
use inferpush_quantized::QuantizedMatrix;
use inferpush_quantized::exp::{exp_in_place, swiglu};
use inferpush_quantized::sums::{Order, reduce_add_16};
use rayon::prelude::*;

use crate::Shape;

struct Block {
    attention_norm: Vec<f32>,
    /// Queries, keys and values, stacked.
    qkv: QuantizedMatrix,
    out: QuantizedMatrix,
    ffn_norm: Vec<f32>,
    /// The gate and up projections, stacked.
    gate_up: QuantizedMatrix,
    down: QuantizedMatrix,
}

/// One sequence's keys and values per block: `kv_heads × head_dim` values per position,
/// rounded to f16 as llama.cpp keeps them (held as f32 for speed).
pub struct Past {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
}

/// Positions of room added at a time.
const CHUNK: usize = 256;

/// The network, its weights on the CPU.
pub struct Plain {
    shape: Shape,
    embedding: QuantizedMatrix,
    blocks: Vec<Block>,
    norm: Vec<f32>,
    /// `None`: tied to the embedding.
    output: Option<QuantizedMatrix>,
    /// `(context, head_dim)`: cos and sin of each pair's angle, interleaved.
    rope: Vec<f32>,
}

/// Gives a GGUF tensor of the file by name.
pub trait Tensors {
    /// The tensor `name`.
    fn tensor(&mut self, name: &str) -> Result<QTensor>;
    /// Whether the file has `name`.
    fn has(&self, name: &str) -> bool;
}

impl Plain {
    /// The network from `tensors`, or `None` when a weight matrix is of a type
    /// [`QuantizedMatrix`] does not take (candle runs it then).
    pub fn load(shape: &Shape, tensors: &mut dyn Tensors) -> Result<Option<Self>> {
        let Some(embedding) = QuantizedMatrix::of(&tensors.tensor("token_embd.weight")?)? else {
            return Ok(None);
        };
        let output = match tensors.has("output.weight") {
            true => match QuantizedMatrix::of(&tensors.tensor("output.weight")?)? {
                Some(output) => Some(output),
                None => return Ok(None),
            },
            false => None,
        };
        let vector = |tensors: &mut dyn Tensors, name: &str| -> Result<Vec<f32>> {
            tensors.tensor(name)?.dequantize(&candle_core::Device::Cpu)?.to_vec1()
        };
        let norm = vector(tensors, "output_norm.weight")?;
        let mut blocks = Vec::with_capacity(shape.layers);
        for layer in 0..shape.layers {
            let name = |part: &str| format!("blk.{layer}.{part}.weight");
            let (attention_norm, ffn_norm) =
                (vector(tensors, &name("attn_norm"))?, vector(tensors, &name("ffn_norm"))?);
            let mut matrices = Vec::new();
            for part in ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"] {
                match QuantizedMatrix::of(&tensors.tensor(&name(part))?)? {
                    Some(matrix) => matrices.push(matrix),
                    None => return Ok(None),
                }
            }
            let mut parts = matrices.into_iter();
            let mut next = || parts.next().expect("seven matrices");
            let (q, k, v, out, gate, up, down) = (next(), next(), next(), next(), next(), next(), next());
            let (Some(qkv), Some(gate_up)) =
                (QuantizedMatrix::stack(vec![q, k, v]), QuantizedMatrix::stack(vec![gate, up]))
            else {
                return Ok(None);
            };
            blocks.push(Block { attention_norm, qkv, out, ffn_norm, gate_up, down });
        }
        Ok(Some(Self { shape: shape.clone(), embedding, blocks, norm, output, rope: rope_table(shape) }))
    }

    /// An empty past.
    pub fn past(&self) -> Past {
        Past { keys: vec![Vec::new(); self.shape.layers], values: vec![Vec::new(); self.shape.layers] }
    }

    /// Runs `tokens`, row `r` the next token of `pasts[owners[r]]` (a sequence's rows in
    /// order), adding each row's keys and values to its sequence's past. `starts[s]` is how
    /// many tokens `pasts[s]` held before. The logits of the rows in `wanted`, one row of
    /// `vocab` each.
    pub fn forward(
        &self,
        tokens: &[u32],
        owners: &[usize],
        pasts: &mut [&mut Past],
        starts: &[usize],
        wanted: &[usize],
    ) -> Vec<f32> {
        let shape = &self.shape;
        let (n, hidden, dim) = (tokens.len(), shape.hidden, shape.head_dim);
        let (q_width, kv_width) = (shape.heads * dim, shape.kv_heads * dim);
        // Each row's position: its sequence's start plus the rows of it before.
        let mut next = starts.to_vec();
        let positions: Vec<usize> = owners
            .iter()
            .map(|&s| {
                next[s] += 1;
                next[s] - 1
            })
            .collect();
        // Each sequence's rows are summed as llama.cpp sums a step of as many tokens: one
        // sequence's text never depends on which others share the step.
        let mut counts = vec![0usize; pasts.len()];
        for &owner in owners {
            counts[owner] += 1;
        }
        let orders: Vec<Order> = counts.iter().map(|&rows| Order::of(rows)).collect();
        let mut x = vec![0f32; n * hidden];
        for (row, &token) in x.chunks_exact_mut(hidden).zip(tokens) {
            self.embedding.dequantize_row(token as usize, row);
        }
        let mut h = vec![0f32; n * hidden];
        let mut qkv = vec![0f32; n * (q_width + 2 * kv_width)];
        let mut y = vec![0f32; n * q_width];
        let mut projected = vec![0f32; n * hidden];
        let feed = self.blocks.first().map_or(0, |b| b.down.columns());
        let mut gate_up = vec![0f32; n * 2 * feed];
        let mut gated = vec![0f32; n * feed];
        for (layer, block) in self.blocks.iter().enumerate() {
            rms_norm(&x, &block.attention_norm, shape.rms_eps, &mut h);
            block.qkv.apply(&h, &mut qkv);
            for (row, &position) in qkv.chunks_exact_mut(q_width + 2 * kv_width).zip(&positions) {
                let angles = &self.rope[position * dim..(position + 1) * dim];
                for head in row[..q_width + kv_width].chunks_exact_mut(dim) {
                    rotate(head, angles);
                }
            }
            for (r, row) in qkv.chunks_exact(q_width + 2 * kv_width).enumerate() {
                let past = &mut pasts[owners[r]];
                let (keys, values) = row[q_width..].split_at(kv_width);
                append(&mut past.keys[layer], keys, kv_width);
                append(&mut past.values[layer], values, kv_width);
            }
            self.attend(layer, &orders, &qkv, owners, &positions, pasts, &mut y);
            block.out.apply(&y, &mut projected);
            add(&mut x, &projected);
            rms_norm(&x, &block.ffn_norm, shape.rms_eps, &mut h);
            block.gate_up.apply(&h, &mut gate_up);
            gated.par_chunks_mut(feed).zip(gate_up.par_chunks(2 * feed)).for_each(|(out, both)| {
                let (gate, up) = both.split_at(feed);
                swiglu(gate, up, out);
            });
            block.down.apply(&gated, &mut projected);
            add(&mut x, &projected);
        }
        let mut last = vec![0f32; wanted.len() * hidden];
        for (out, &row) in last.chunks_exact_mut(hidden).zip(wanted) {
            out.copy_from_slice(&x[row * hidden..(row + 1) * hidden]);
        }
        let mut normed = vec![0f32; last.len()];
        rms_norm(&last, &self.norm, shape.rms_eps, &mut normed);
        let output = self.output.as_ref().unwrap_or(&self.embedding);
        let mut logits = vec![0f32; wanted.len() * output.rows()];
        output.apply(&normed, &mut logits);
        logits
    }

    /// Attention of every row's query heads over its sequence's past up to its position,
    /// into `y` (`heads × head_dim` per row), summed in its sequence's order.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        layer: usize,
        orders: &[Order],
        qkv: &[f32],
        owners: &[usize],
        positions: &[usize],
        pasts: &[&mut Past],
        y: &mut [f32],
    ) {
        let shape = &self.shape;
        let dim = shape.head_dim;
        let (q_width, kv_width) = (shape.heads * dim, shape.kv_heads * dim);
        let stride = q_width + 2 * kv_width;
        let group = shape.heads / shape.kv_heads;
        let scale = 1. / (dim as f32).sqrt();
        y.par_chunks_mut(dim).enumerate().for_each(|(index, out)| {
            let (row, head) = (index / shape.heads, index % shape.heads);
            let (past, order) = (&pasts[owners[row]], orders[owners[row]]);
            let (keys, values) = (&past.keys[layer], &past.values[layer]);
            let kv = (head / group) * dim;
            // ggml converts the query to the cache's f16 for the product with the keys.
            let query: Vec<f32> =
                qkv[row * stride + head * dim..][..dim].iter().map(|v| to_half(*v)).collect();
            let seen = positions[row] + 1;
            let mut weights = vec![0f32; seen];
            order.dots(&query, keys.chunks_exact(kv_width).map(|key| &key[kv..][..dim]), &mut weights);
            for weight in &mut weights {
                *weight *= scale;
            }
            softmax(&mut weights);
            // And the weights to f16 for the product with the values.
            for weight in &mut weights {
                *weight = to_half(*weight);
            }
            order.weighted_sum(&weights, |t| &values[t * kv_width + kv..][..dim], out);
        });
    }
}

/// Adds one position's keys or values, rounded to f16, growing the room a chunk at a time.
fn append(past: &mut Vec<f32>, row: &[f32], width: usize) {
    if past.len() == past.capacity() {
        past.reserve_exact(CHUNK * width);
    }
    past.extend(row.iter().map(|v| to_half(*v)));
}

fn to_half(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// ggml's `rms_norm` then the weight: the squares summed in f64, their mean taken to f32
/// before epsilon is added.
fn rms_norm(x: &[f32], weight: &[f32], eps: f64, out: &mut [f32]) {
    let width = weight.len();
    for (row, out) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        let sum: f64 = row.iter().map(|v| f64::from(v * v)).sum();
        let mean = (sum / width as f64) as f32;
        let scale = 1. / (mean + eps as f32).sqrt();
        for ((o, v), w) in out.iter_mut().zip(row).zip(weight) {
            *o = v * scale * w;
        }
    }
}

/// ggml's `soft_max` (AVX-512 form): ggml's exponential of each value less the largest,
/// every 16 of them summed as `_mm512_reduce_add_ps` does and those sums added in f64.
fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    for v in x.iter_mut() {
        *v -= max;
    }
    exp_in_place(x);
    let mut sum = 0f64;
    for chunk in x.chunks(16) {
        let mut lanes = [0f32; 16];
        lanes[..chunk.len()].copy_from_slice(chunk);
        sum += f64::from(reduce_add_16(&lanes));
    }
    let scale = (1. / sum) as f32;
    for v in x.iter_mut() {
        *v *= scale;
    }
}

/// Rotates each adjacent pair of `head` by its angle (`angles` holds cos, sin per pair).
fn rotate(head: &mut [f32], angles: &[f32]) {
    for (pair, angle) in head.chunks_exact_mut(2).zip(angles.chunks_exact(2)) {
        let (x0, x1) = (pair[0], pair[1]);
        let (cos, sin) = (angle[0], angle[1]);
        // As GCC contracts ggml's `x0*cos - x1*sin` and `x0*sin + x1*cos`.
        pair[0] = x0.mul_add(cos, -(x1 * sin));
        pair[1] = x0.mul_add(sin, x1 * cos);
    }
}

/// ggml's rope cache for every position: `theta = position`, times
/// `base^(-2 / head_dim)` from pair to pair, in f32.
fn rope_table(shape: &Shape) -> Vec<f32> {
    let dim = shape.head_dim;
    let theta_scale = shape.rope_base.powf(-2. / dim as f32);
    let mut table = Vec::with_capacity(shape.context * dim);
    for position in 0..shape.context {
        let mut theta = position as f32;
        for _ in 0..dim / 2 {
            table.push(theta.cos());
            table.push(theta.sin());
            theta *= theta_scale;
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut x = vec![1., 3., 2., f32::NEG_INFINITY];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.).abs() < 1e-6);
        assert!(x[1] > x[2] && x[2] > x[0] && x[3] == 0.);
    }

    #[test]
    fn rope_turns_pairs_by_position_times_the_pairs_frequency() {
        let mut head = vec![1., 0., 1., 0.];
        let angles = [0.5f32.cos(), 0.5f32.sin(), 0.25f32.cos(), 0.25f32.sin()];
        rotate(&mut head, &angles);
        assert!((head[0] - 0.5f32.cos()).abs() < 1e-7 && (head[1] - 0.5f32.sin()).abs() < 1e-7);
        assert!((head[2] - 0.25f32.cos()).abs() < 1e-7);
    }

    #[test]
    fn rms_norm_scales_rows_to_unit_root_mean_square() {
        let x = [3., 4., 0., 0., 1., 1., 1., 1.];
        let mut out = [0.; 8];
        rms_norm(&x, &[1., 1., 1., 2.], 0., &mut out);
        assert!((out[0] - 3. / 2.5).abs() < 1e-6 && (out[1] - 4. / 2.5).abs() < 1e-6);
        assert_eq!(&out[4..], &[1., 1., 1., 2.]);
    }
}
