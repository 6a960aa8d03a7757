//! The engine trait: one small synchronous interface, as text-embeddings-inference has,
//! so the batcher's thread can own any engine.

use super::tokenize::Encoded;

/// Runs the network on a padded batch and returns one L2-normalised embedding per row.
pub trait Engine: Send {
    /// Short name for logs and benchmarks (`ort`, `candle`).
    fn name(&self) -> &'static str;
    /// Embeds every row of `batch`, in order.
    fn embed(&mut self, batch: &Encoded) -> anyhow::Result<Vec<Vec<f32>>>;
}
