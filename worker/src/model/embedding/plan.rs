//! Which texts share a forward pass. A pass pads every row to its longest, so a pass
//! spends `rows × longest` tokens whatever its texts' own lengths: one long text among
//! short ones makes the short ones as dear as it. So a pass is bounded by a token budget
//! (padding included, as text-embeddings-inference's `max_batch_tokens`) and a row count,
//! and filled with texts of similar length.
//!
//! The oldest waiting text always goes in the next pass (nothing starves); the texts
//! nearest its length join it while the budget allows.

use super::engine::Engine;
use super::tokenize::{Encoded, Tokens};

/// The size of one forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassLimits {
    /// Most texts (rows).
    pub max_texts: usize,
    /// Most tokens, padding included: rows × the longest row.
    pub max_tokens: usize,
}

impl PassLimits {
    fn fits(&self, rows: usize, longest: usize) -> bool {
        rows <= self.max_texts && rows * longest <= self.max_tokens
    }
}

/// The next pass out of texts of `lengths` tokens (oldest first): positions into
/// `lengths`, ascending. Always the first (alone if it is over the budget by itself), then
/// the nearest in length, shorter before longer at the same distance, while they fit.
pub fn next_pass(lengths: &[usize], limits: PassLimits) -> Vec<usize> {
    let Some(&anchor) = lengths.first() else { return Vec::new() };
    let mut nearest: Vec<usize> = (1..lengths.len()).collect();
    nearest.sort_by_key(|&i| (lengths[i].abs_diff(anchor), lengths[i] > anchor, i));
    let mut chosen = vec![0];
    let mut longest = anchor;
    for i in nearest {
        if chosen.len() >= limits.max_texts {
            break;
        }
        let with = longest.max(lengths[i]);
        // One that does not fit may be followed by a shorter one that does.
        if limits.fits(chosen.len() + 1, with) {
            chosen.push(i);
            longest = with;
        }
    }
    chosen.sort_unstable();
    chosen
}

/// Removes the elements at `positions` (ascending) from `items`, returning them in order.
pub fn take_positions<T>(items: &mut Vec<T>, positions: &[usize]) -> Vec<T> {
    let mut taken = Vec::with_capacity(positions.len());
    let mut kept = Vec::with_capacity(items.len() - positions.len());
    let mut wanted = positions.iter().peekable();
    for (i, item) in items.drain(..).enumerate() {
        if wanted.peek() == Some(&&i) {
            wanted.next();
            taken.push(item);
        } else {
            kept.push(item);
        }
    }
    *items = kept;
    taken
}

/// Embeds all of `texts` in passes within `limits`: sorted by length, cut into runs that
/// fit. Rows come back in the order of `texts`.
pub fn embed_all(
    engine: &mut dyn Engine,
    texts: &[Tokens],
    limits: PassLimits,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut remaining: Vec<usize> = (0..texts.len()).collect();
    remaining.sort_by_key(|&i| texts[i].len());
    let mut rows = vec![Vec::new(); texts.len()];
    while !remaining.is_empty() {
        let lengths: Vec<usize> = remaining.iter().map(|&i| texts[i].len()).collect();
        let pass = next_pass(&lengths, limits);
        let members = take_positions(&mut remaining, &pass);
        let batch = Encoded::pad(&members.iter().map(|&i| &texts[i]).collect::<Vec<_>>());
        let embedded = engine.embed(&batch)?;
        anyhow::ensure!(
            embedded.len() == members.len(),
            "the engine returned {} rows for {} texts",
            embedded.len(),
            members.len()
        );
        for (i, row) in members.into_iter().zip(embedded) {
            rows[i] = row;
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PassLimits = PassLimits { max_texts: 4, max_tokens: 100 };

    #[test]
    fn the_oldest_goes_first_with_the_texts_nearest_its_length() {
        // 10 tokens first; 12, 9 and 11 are nearest; 200 and 80 wait.
        assert_eq!(next_pass(&[10, 200, 12, 80, 9, 11], LIMITS), vec![0, 2, 4, 5]);
        // Equally near: the shorter first.
        assert_eq!(next_pass(&[10, 12, 8], PassLimits { max_texts: 2, ..LIMITS }), vec![0, 2]);
    }

    #[test]
    fn padding_counts_against_the_budget() {
        // 3 × 30 = 90 fits; a fourth at 30 would be 120.
        assert_eq!(next_pass(&[30, 30, 30, 30], LIMITS), vec![0, 1, 2]);
        // The nearer but longer one is past the budget; a farther, shorter one still joins.
        assert_eq!(next_pass(&[50, 60, 20], LIMITS), vec![0, 2]);
    }

    #[test]
    fn a_text_over_the_budget_alone_still_runs() {
        assert_eq!(next_pass(&[256, 10], LIMITS), vec![0]);
        assert!(next_pass(&[], LIMITS).is_empty());
    }

    #[test]
    fn taking_positions_keeps_both_halves_in_order() {
        let mut items = vec!['a', 'b', 'c', 'd', 'e'];
        assert_eq!(take_positions(&mut items, &[1, 3]), vec!['b', 'd']);
        assert_eq!(items, vec!['a', 'c', 'e']);
    }
}
