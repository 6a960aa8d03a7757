//! The candle engine: BERT in pure Rust, then mean pooling and L2 normalisation as
//! sentence-transformers does. No native library; the same code runs on a CUDA GPU in a
//! build with the `cuda` feature, in f32 or f16 (pooling is always done in f32).
//!
//! The encoder is candle's; the embedding layer and the attention mask are built here,
//! because candle's `BertModel` masks padding with `f32::MIN`, which is `-inf` in f16, so
//! every real token's score became `0 × -inf = NaN` in a padded f16 batch.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder, embedding, layer_norm};
use candle_transformers::models::bert::{BertEncoder, Config};

use super::engine::Engine;
use super::tokenize::Encoded;

/// What masked-out positions add to the attention scores: large enough that softmax gives
/// them 0, small enough to be finite in f16 (as the original BERT did).
const MASKED: f64 = -10_000.0;

/// BERT's embedding layer: word + token type + absolute position, then LayerNorm.
struct Embeddings {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<Self> {
        Ok(Self {
            words: embedding(config.vocab_size, config.hidden_size, vb.pp("word_embeddings"))?,
            positions: embedding(
                config.max_position_embeddings,
                config.hidden_size,
                vb.pp("position_embeddings"),
            )?,
            token_types: embedding(
                config.type_vocab_size,
                config.hidden_size,
                vb.pp("token_type_embeddings"),
            )?,
            norm: layer_norm(config.hidden_size, config.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    fn forward(&self, ids: &Tensor, token_types: &Tensor) -> candle_core::Result<Tensor> {
        let positions = Tensor::arange(0u32, ids.dim(1)? as u32, ids.device())?;
        let summed = (self.words.forward(ids)? + self.token_types.forward(token_types)?)?
            .broadcast_add(&self.positions.forward(&positions)?)?;
        self.norm.forward(&summed)
    }
}

/// all-MiniLM-L6-v2 on candle.
pub struct CandleEngine {
    embeddings: Embeddings,
    encoder: BertEncoder,
    device: Device,
    dtype: DType,
}

impl CandleEngine {
    /// Loads `config.json` and `model.safetensors` from `dir` onto `device`, in `dtype`.
    pub fn load(dir: &Path, device: Device, dtype: DType) -> anyhow::Result<Self> {
        let config: Config = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
        let weights = dir.join("model.safetensors");
        // Read into memory rather than mmap: no unsafe, and 90 MB is small.
        let bytes = std::fs::read(&weights)?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, dtype, &device)?;
        // Saved from `BertModel` (no prefix) or from a model that wraps it (`bert.`).
        let vb =
            if vb.contains_tensor("bert.embeddings.word_embeddings.weight") { vb.pp("bert") } else { vb };
        Ok(Self {
            embeddings: Embeddings::load(vb.pp("embeddings"), &config)?,
            encoder: BertEncoder::load(vb.pp("encoder"), &config)?,
            device,
            dtype,
        })
    }
}

impl Engine for CandleEngine {
    fn name(&self) -> &'static str {
        "candle"
    }

    fn embed(&mut self, batch: &Encoded) -> anyhow::Result<Vec<Vec<f32>>> {
        let shape = (batch.rows, batch.seq_len);
        let ids = Tensor::from_slice(&batch.input_ids, shape, &self.device)?;
        let types = Tensor::from_slice(&batch.token_type_ids, shape, &self.device)?;
        let mask = Tensor::from_slice(&batch.attention_mask, shape, &self.device)?.to_dtype(DType::F32)?;
        // (rows, 1, 1, seq): 0 for real tokens, MASKED for padding, added to every head's scores.
        let scores_mask = mask.affine(-MASKED, MASKED)?.to_dtype(self.dtype)?.unsqueeze(1)?.unsqueeze(1)?;
        let hidden = self.encoder.forward(&self.embeddings.forward(&ids, &types)?, &scores_mask)?;
        let hidden = hidden.to_dtype(DType::F32)?;
        // Mean over real tokens only: padding must not leak into the pooling.
        let mask = mask.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norms)?.to_vec2::<f32>()?)
    }
}
