//! The orders in which ggml sums a product of f16 vectors, attention's queries by keys and
//! weights by values (every product of two f16 values is exact in f32, so the order is the
//! whole difference): llama.cpp multiplies them as matrices, through tinyBLAS's kernel when
//! the step holds several tokens and through `ggml_vec_dot_f16` when it holds one (AVX-512
//! forms). The loops are written once and compiled twice, for AVX-512 where the CPU has it
//! (the same additions in the same order, sixteen lanes to an instruction).

/// Which of ggml's two orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// tinyBLAS: 16 lanes, element `i` into lane `i % 16` in turn; then the lanes summed as
    /// `_mm512_reduce_add_ps` sums them.
    Batch,
    /// `ggml_vec_dot_f16`: four accumulators of 16 lanes over each 64 elements, the
    /// accumulators summed pairwise, then the lanes; a tail under 64 added in f64.
    Single,
}

impl Order {
    /// The order of a step of `tokens` tokens of one sequence (a prompt, or one new token).
    pub fn of(tokens: usize) -> Self {
        if tokens == 1 { Order::Single } else { Order::Batch }
    }

    /// `out[t] = Σ a[i] · rows[t][i]`, each in this order.
    pub fn dots<'a>(self, a: &[f32], rows: impl Iterator<Item = &'a [f32]>, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the CPU has AVX-512F.
            unsafe { avx512::dots(self, a, rows, out) };
            return;
        }
        dots(self, a, rows, out);
    }

    /// `out[d] = Σ_t weights[t] · row(t)[d]`, each `d` summed over `t` in this order.
    pub fn weighted_sum<'a>(self, weights: &[f32], row: impl Fn(usize) -> &'a [f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the CPU has AVX-512F.
            unsafe { avx512::weighted_sum(self, weights, row, out) };
            return;
        }
        weighted_sum(self, weights, row, out);
    }
}

#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[inline(always)]
fn dots<'a>(order: Order, a: &[f32], rows: impl Iterator<Item = &'a [f32]>, out: &mut [f32]) {
    for (out, b) in out.iter_mut().zip(rows) {
        *out = match order {
            Order::Batch => lanes_dot::<16>(a, b),
            Order::Single => lanes_dot::<64>(a, b),
        };
    }
}

#[inline(always)]
fn weighted_sum<'a>(order: Order, weights: &[f32], row: impl Fn(usize) -> &'a [f32], out: &mut [f32]) {
    match order {
        Order::Batch => lanes_weighted_sum::<16>(weights, row, out),
        Order::Single => lanes_weighted_sum::<64>(weights, row, out),
    }
}

/// `Σ a[i] · b[i]` over `W` lanes (16: tinyBLAS, 64: `ggml_vec_dot_f16`'s four accumulators
/// side by side), element `i` into lane `i % W` in turn; a tail under `W` added in f64 after
/// the lanes (tinyBLAS takes only lengths it covers whole).
#[inline(always)]
fn lanes_dot<const W: usize>(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; W];
    let (chunks_a, chunks_b) = (a.chunks_exact(W), b.chunks_exact(W));
    let tail: f64 =
        chunks_a.remainder().iter().zip(chunks_b.remainder()).map(|(x, y)| f64::from(x * y)).sum();
    for (x, y) in chunks_a.zip(chunks_b) {
        for i in 0..W {
            lanes[i] += x[i] * y[i];
        }
    }
    let sixteen: [f32; 16] = std::array::from_fn(|l| match W {
        16 => lanes[l],
        _ => (lanes[l] + lanes[32 + l]) + (lanes[16 + l] + lanes[48 + l]),
    });
    (f64::from(reduce_add_16(&sixteen)) + tail) as f32
}

/// `out[d] = Σ_t weights[t] · row(t)[d]` over `W` lanes of `t`, as [`lanes_dot`]. The
/// cache's positions past `weights.len()` hold zeros for ggml (a padded view): they leave
/// every sum as it is, so the tail is part of the lanes here. Each lane and each step of the
/// lanes' sum is a loop over `d`, so every one is a vector operation.
#[inline(always)]
fn lanes_weighted_sum<'a, const W: usize>(
    weights: &[f32],
    row: impl Fn(usize) -> &'a [f32],
    out: &mut [f32],
) {
    let dim = out.len();
    let mut lanes = vec![0f32; W * dim];
    for (t, weight) in weights.iter().enumerate() {
        let lane = &mut lanes[(t % W) * dim..][..dim];
        for (acc, v) in lane.iter_mut().zip(row(t)) {
            *acc += weight * v;
        }
    }
    // 64 lanes: the four accumulators added 0 + 2 and 1 + 3, then those two, into the first 16.
    if W == 64 {
        let (low, high) = lanes.split_at_mut(32 * dim);
        let (first, second) = low.split_at_mut(16 * dim);
        for l in 0..16 {
            let (a, b) = (&mut first[l * dim..][..dim], &second[l * dim..][..dim]);
            let (c, d) = (&high[l * dim..][..dim], &high[(16 + l) * dim..][..dim]);
            for i in 0..dim {
                a[i] = (a[i] + c[i]) + (b[i] + d[i]);
            }
        }
    }
    // Then `_mm512_reduce_add_ps`'s tree over the 16, as `reduce_add_16`.
    let lane = |l: usize| l * dim..(l + 1) * dim;
    for (half, step) in [(8, 8), (4, 4)] {
        for l in 0..half {
            let (low, high) = lanes.split_at_mut(lane(l + step).start);
            for (a, b) in low[lane(l)].iter_mut().zip(&high[..dim]) {
                *a += b;
            }
        }
    }
    for (d, out) in out.iter_mut().enumerate() {
        *out = (lanes[d] + lanes[2 * dim + d]) + (lanes[dim + d] + lanes[3 * dim + d]);
    }
}

/// `_mm512_reduce_add_ps` as GCC writes it: the upper 8 lanes added to the lower, then the
/// upper 4 of those to the lower, then `(a0 + a2) + (a1 + a3)`.
pub fn reduce_add_16(lanes: &[f32; 16]) -> f32 {
    let eight: [f32; 8] = std::array::from_fn(|i| lanes[i + 8] + lanes[i]);
    let four: [f32; 4] = std::array::from_fn(|i| eight[i + 4] + eight[i]);
    (four[0] + four[2]) + (four[1] + four[3])
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::Order;

    #[target_feature(enable = "avx512f")]
    pub(super) fn dots<'a>(order: Order, a: &[f32], rows: impl Iterator<Item = &'a [f32]>, out: &mut [f32]) {
        super::dots(order, a, rows, out);
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn weighted_sum<'a>(
        order: Order,
        weights: &[f32],
        row: impl Fn(usize) -> &'a [f32],
        out: &mut [f32],
    ) {
        super::weighted_sum(order, weights, row, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lanes' sum written plainly: each lane's column in order, then the tree.
    fn plain_weighted_sum<const W: usize>(weights: &[f32], rows: &[Vec<f32>], dim: usize) -> Vec<f32> {
        let mut lanes = vec![[0f32; W]; dim];
        for (t, weight) in weights.iter().enumerate() {
            for d in 0..dim {
                lanes[d][t % W] += weight * rows[t][d];
            }
        }
        lanes
            .iter()
            .map(|l| {
                let sixteen: [f32; 16] = std::array::from_fn(|i| match W {
                    16 => l[i],
                    _ => (l[i] + l[32 + i]) + (l[16 + i] + l[48 + i]),
                });
                reduce_add_16(&sixteen)
            })
            .collect()
    }

    #[test]
    fn each_order_sums_as_written_out_plainly_and_the_avx512_loops_give_the_same_bits() {
        let dim = 64;
        let value = |i: usize| half::f16::from_f32(((i * 7919 % 1013) as f32 - 506.) / 97.).to_f32();
        for count in [1, 15, 16, 17, 63, 64, 65, 200] {
            let rows: Vec<Vec<f32>> =
                (0..count).map(|t| (0..dim).map(|d| value(t * dim + d + 3)).collect()).collect();
            let query: Vec<f32> = (0..dim).map(value).collect();
            let weights: Vec<f32> = (0..count).map(|t| value(t * 31 + 5) / 16.).collect();
            for order in [Order::Batch, Order::Single] {
                let mut generic = vec![0.; count];
                dots(order, &query, rows.iter().map(Vec::as_slice), &mut generic);
                let mut dispatched = vec![0.; count];
                order.dots(&query, rows.iter().map(Vec::as_slice), &mut dispatched);
                assert_eq!(generic, dispatched, "{order:?} dots, {count} rows");

                let mut generic = vec![0.; dim];
                weighted_sum(order, &weights, |t| &rows[t], &mut generic);
                let mut dispatched = vec![0.; dim];
                order.weighted_sum(&weights, |t| &rows[t], &mut dispatched);
                assert_eq!(generic, dispatched, "{order:?} weighted sum, {count} rows");
                let plain = match order {
                    Order::Batch => plain_weighted_sum::<16>(&weights, &rows, dim),
                    Order::Single => plain_weighted_sum::<64>(&weights, &rows, dim),
                };
                assert_eq!(generic, plain, "{order:?} weighted sum, {count} rows");
            }
        }
    }
}
