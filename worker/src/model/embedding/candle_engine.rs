//! The candle engine: BERT in pure Rust, then the card's pooling (mean or CLS) and L2
//! normalisation as sentence-transformers does. No native library; the same code runs on a CUDA GPU in a
//! build with the `cuda` feature, in f32 or f16 (pooling is always done in f32).
//!
//! The encoder is candle's; the embedding layer and the attention mask are built here,
//! because candle's `BertModel` masks padding with `f32::MIN`, which is `-inf` in f16, so
//! every real token's score became `0 × -inf = NaN` in a padded f16 batch.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder, embedding, layer_norm};
use candle_transformers::models::bert::{BertEncoder, Config};

use inferpush_repository::Pooling;

use super::ModelFiles;
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

/// A BERT-style sentence encoder on candle.
pub struct CandleEngine {
    embeddings: Embeddings,
    encoder: BertEncoder,
    device: Device,
    dtype: DType,
    pooling: Pooling,
    normalize: bool,
}

impl CandleEngine {
    /// Loads the card's `config.json` and safetensors weights onto `device`, in `dtype`.
    pub fn load(files: &ModelFiles, device: Device, dtype: DType) -> anyhow::Result<Self> {
        let (weights, _, config) = files
            .safetensors
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("`{}` has no safetensors weights", files.name))?;
        let config: Config = serde_json::from_str(&read(config)?)?;
        // Read into memory rather than mmap: no unsafe, and 90 MB is small.
        let bytes =
            std::fs::read(weights).map_err(|e| anyhow::anyhow!("reading {}: {e}", weights.display()))?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, dtype, &device)?;
        // Saved from `BertModel` (no prefix) or from a model that wraps it (`bert.`).
        let vb =
            if vb.contains_tensor("bert.embeddings.word_embeddings.weight") { vb.pp("bert") } else { vb };
        Ok(Self {
            embeddings: Embeddings::load(vb.pp("embeddings"), &config)?,
            encoder: BertEncoder::load(vb.pp("encoder"), &config)?,
            device,
            dtype,
            pooling: files.pooling,
            normalize: files.normalize,
        })
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
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
        let pooled = match self.pooling {
            // Mean over real tokens only: padding must not leak into the pooling.
            Pooling::Mean => {
                let mask = mask.unsqueeze(2)?;
                let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
                let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
                summed.broadcast_div(&counts)?
            }
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
        };
        if !self.normalize {
            return Ok(pooled.to_vec2::<f32>()?);
        }
        let norms = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(pooled.broadcast_div(&norms)?.to_vec2::<f32>()?)
    }
}
