//! Tokenisation as the original model does it: BERT WordPiece, truncated at 256 tokens,
//! padded to the longest text of the batch (the shipped `tokenizer.json` says 128 and
//! fixed padding, which would silently change long inputs).

use std::path::Path;

use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2.
pub const MAX_TOKENS: usize = 256;

/// A batch of texts as the network takes it: row-major `[rows, seq_len]` arrays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Number of texts.
    pub rows: usize,
    /// Tokens per row after padding.
    pub seq_len: usize,
    /// Token ids.
    pub input_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Segment ids (all 0 for single sentences).
    pub token_type_ids: Vec<i64>,
}

/// The model's tokenizer, configured for batches.
pub struct TextTokenizer {
    inner: Tokenizer,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, truncating at [`MAX_TOKENS`] and padding to the longest.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let mut inner =
            Tokenizer::from_file(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        inner
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
            .map_err(|e| anyhow::anyhow!("configuring truncation: {e}"))?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        Ok(Self { inner })
    }

    /// Encodes `texts` into one padded batch.
    pub fn encode(&self, texts: &[&str]) -> anyhow::Result<Encoded> {
        let encodings =
            self.inner.encode_batch(texts.to_vec(), true).map_err(|e| anyhow::anyhow!("tokenising: {e}"))?;
        let seq_len = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut batch = Encoded {
            rows: encodings.len(),
            seq_len,
            input_ids: Vec::with_capacity(encodings.len() * seq_len),
            attention_mask: Vec::with_capacity(encodings.len() * seq_len),
            token_type_ids: Vec::with_capacity(encodings.len() * seq_len),
        };
        for encoding in &encodings {
            batch.input_ids.extend(encoding.get_ids().iter().map(|&v| i64::from(v)));
            batch.attention_mask.extend(encoding.get_attention_mask().iter().map(|&v| i64::from(v)));
            batch.token_type_ids.extend(encoding.get_type_ids().iter().map(|&v| i64::from(v)));
        }
        Ok(batch)
    }
}
