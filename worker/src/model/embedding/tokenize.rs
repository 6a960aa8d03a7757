//! Tokenisation as the original model does it: the card's `tokenizer.json`, truncated at
//! the card's `limits.max_tokens` (256 for all-MiniLM-L6-v2, whose shipped `tokenizer.json`
//! says 128 and fixed padding, which would silently change long inputs). Texts are tokenised one by one, unpadded, when a task arrives, so the
//! batcher knows each text's length; a forward pass pads its rows to its longest.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationParams};

/// BERT's `[PAD]` token id.
const PAD_ID: i64 = 0;

/// One text as the network reads it: token ids and segment ids, `[CLS]` and `[SEP]`
/// included, unpadded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    ids: Vec<u32>,
    type_ids: Vec<u32>,
}

impl Tokens {
    /// Its length in tokens (what a forward pass spends on it, and what usage counts).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True for a text of no tokens (never produced: `[CLS]` and `[SEP]` are always there).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

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

impl Encoded {
    /// `rows` padded to the longest of them.
    pub fn pad(rows: &[&Tokens]) -> Self {
        let seq_len = rows.iter().map(|t| t.len()).max().unwrap_or(0);
        let cells = rows.len() * seq_len;
        let mut batch = Encoded {
            rows: rows.len(),
            seq_len,
            input_ids: Vec::with_capacity(cells),
            attention_mask: Vec::with_capacity(cells),
            token_type_ids: Vec::with_capacity(cells),
        };
        for row in rows {
            let padding = seq_len - row.len();
            batch.input_ids.extend(row.ids.iter().map(|&v| i64::from(v)));
            batch.input_ids.extend(std::iter::repeat_n(PAD_ID, padding));
            batch.attention_mask.extend(std::iter::repeat_n(1, row.len()));
            batch.attention_mask.extend(std::iter::repeat_n(0, padding));
            batch.token_type_ids.extend(row.type_ids.iter().map(|&v| i64::from(v)));
            batch.token_type_ids.extend(std::iter::repeat_n(0, padding));
        }
        batch
    }

    /// Real (unpadded) tokens in the batch.
    pub fn real_tokens(&self) -> usize {
        self.attention_mask.iter().filter(|mask| **mask == 1).count()
    }
}

/// The model's tokenizer, truncating at the card's `max_tokens`.
pub struct TextTokenizer {
    inner: Tokenizer,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, truncating at `max_tokens` and padding nothing.
    pub fn load(path: &Path, max_tokens: usize) -> anyhow::Result<Self> {
        let mut inner =
            Tokenizer::from_file(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        inner
            .with_truncation(Some(TruncationParams { max_length: max_tokens, ..Default::default() }))
            .map_err(|e| anyhow::anyhow!("configuring truncation: {e}"))?;
        inner.with_padding(None);
        Ok(Self { inner })
    }

    /// Each of `texts`, tokenised alone.
    pub fn tokens(&self, texts: &[&str]) -> anyhow::Result<Vec<Tokens>> {
        let encodings =
            self.inner.encode_batch(texts.to_vec(), true).map_err(|e| anyhow::anyhow!("tokenising: {e}"))?;
        Ok(encodings
            .into_iter()
            .map(|e| Tokens { ids: e.get_ids().to_vec(), type_ids: e.get_type_ids().to_vec() })
            .collect())
    }

    /// Encodes `texts` into one batch padded to the longest.
    pub fn encode(&self, texts: &[&str]) -> anyhow::Result<Encoded> {
        let tokens = self.tokens(texts)?;
        Ok(Encoded::pad(&tokens.iter().collect::<Vec<_>>()))
    }
}
