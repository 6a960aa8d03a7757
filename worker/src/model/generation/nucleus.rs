//! Nucleus (top-p) sampling without sorting the vocabulary: the smallest set of likeliest
//! tokens whose probability at the temperature reaches `top_p` is found among the
//! [`CANDIDATES`] likeliest (a partial selection, linear in the vocabulary), sorting all of
//! them only in the rare case those hold less; every other token's logit becomes -inf, and
//! the draw itself is left to candle's sampler. The set is the one candle's own top-p keeps
//! (tokens in order of probability while the sum before them is below `top_p`), which sorts
//! the whole vocabulary (49 152 tokens here) at every step of every sequence.

/// Likeliest tokens looked at first.
pub const CANDIDATES: usize = 64;

/// Masks `logits` down to the nucleus of mass `top_p` at `temperature` (> 0).
pub fn mask(logits: &mut [f32], temperature: f64, top_p: f64) {
    if top_p >= 1. || logits.is_empty() {
        return;
    }
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    let weight = |logit: f32| (f64::from(logit - max) / temperature).exp();
    let total: f64 = logits.iter().map(|l| weight(*l)).sum();
    let by_logit = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]);
    let mut order: Vec<usize> = (0..logits.len()).collect();
    // How many of `order` (likeliest first) the nucleus takes, if it ends within them.
    let keep = |order: &[usize]| {
        let mut mass = 0.;
        for (n, index) in order.iter().enumerate() {
            if mass >= top_p {
                return Some(n);
            }
            mass += weight(logits[*index]) / total;
        }
        (mass >= top_p).then_some(order.len())
    };
    let kept = if order.len() > CANDIDATES {
        order.select_nth_unstable_by(CANDIDATES - 1, by_logit);
        order[..CANDIDATES].sort_unstable_by(by_logit);
        keep(&order[..CANDIDATES])
    } else {
        None
    };
    let kept = kept.unwrap_or_else(|| {
        order.sort_unstable_by(by_logit);
        keep(&order).unwrap_or(order.len())
    });
    for index in &order[kept..] {
        logits[*index] = f32::NEG_INFINITY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nucleus as candle's sampler finds it: sort everything.
    fn by_full_sort(logits: &[f32], temperature: f64, top_p: f64) -> Vec<usize> {
        let max = logits.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
        let weights: Vec<f64> = logits.iter().map(|l| (f64::from(l - max) / temperature).exp()).collect();
        let total: f64 = weights.iter().sum();
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
        let (mut mass, mut kept) = (0., Vec::new());
        for index in order {
            if mass >= top_p {
                break;
            }
            mass += weights[index] / total;
            kept.push(index);
        }
        kept.sort_unstable();
        kept
    }

    fn kept(logits: &[f32], temperature: f64, top_p: f64) -> Vec<usize> {
        let mut masked = logits.to_vec();
        mask(&mut masked, temperature, top_p);
        (0..logits.len()).filter(|i| masked[*i] != f32::NEG_INFINITY).collect()
    }

    #[test]
    fn the_nucleus_is_the_one_a_full_sort_finds_peaked_or_flat() {
        // Distinct logits (7919 is prime to 5000): no ties to order either way.
        let vocabulary = 5000;
        let peaked: Vec<f32> = (0..vocabulary).map(|i| (i * 7919 % vocabulary) as f32 / 25.).collect();
        let flat: Vec<f32> = (0..vocabulary).map(|i| (i * 7919 % vocabulary) as f32 / 1e5).collect();
        for logits in [&peaked, &flat] {
            for (temperature, top_p) in [(0.2, 0.9), (1.0, 0.9), (1.0, 0.5), (0.7, 0.99)] {
                assert_eq!(kept(logits, temperature, top_p), by_full_sort(logits, temperature, top_p));
            }
        }
        assert!(kept(&peaked, 0.2, 0.9).len() < CANDIDATES, "a peaked one ends among the candidates");
        assert!(kept(&flat, 1.0, 0.9).len() > CANDIDATES, "a flat one needs the full sort");
        assert_eq!(kept(&peaked, 1.0, 1.0).len(), vocabulary, "top_p 1 keeps every token");
    }
}
