//! The candle engine: BERT in pure Rust, then mean pooling and L2 normalisation as
//! sentence-transformers does. No native library; the same code runs on CUDA.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

use super::engine::Engine;
use super::tokenize::Encoded;

/// all-MiniLM-L6-v2 on candle.
pub struct CandleEngine {
    model: BertModel,
    device: Device,
}

impl CandleEngine {
    /// Loads `config.json` and `model.safetensors` from `dir` onto `device`.
    pub fn load(dir: &Path, device: Device) -> anyhow::Result<Self> {
        let config: Config = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
        let weights = dir.join("model.safetensors");
        // Read into memory rather than mmap: no unsafe, and 90 MB is small.
        let bytes = std::fs::read(&weights)?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)?;
        let model = BertModel::load(vb, &config)?;
        Ok(Self { model, device })
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
        let mask = Tensor::from_slice(&batch.attention_mask, shape, &self.device)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        // Mean over real tokens only: padding must not leak into the pooling.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norms)?.to_vec2::<f32>()?)
    }
}
