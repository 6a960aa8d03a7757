//! The llama network over a GGUF file's quantized weights on a CPU, as llama.cpp's CPU
//! backend computes it, over plain `f32` slices ([`network`]); its [`Shape`] read from the
//! file's metadata. The worker's generation engine runs it (and candle's tensors on other
//! devices). Optimised even in test builds: it is the generation model's hot loop.

pub mod network;

use candle_core::Result;
use candle_core::quantized::gguf_file::Content;

pub use network::{Past, Plain, Tensors};

/// The shape of the network, from the file's `llama.*` metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// Transformer blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `heads`).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Width of the residual stream.
    pub hidden: usize,
    /// Longest sequence the model was trained for.
    pub context: usize,
    /// Tokens in the vocabulary (width of the logits).
    pub vocab: usize,
    /// RMS norm's epsilon.
    pub rms_eps: f64,
    /// rope's frequency base.
    pub rope_base: f32,
}

impl Shape {
    /// Reads it from a GGUF file's metadata; only `general.architecture = llama` is taken.
    pub fn of(content: &Content) -> Result<Self> {
        let get = |key: &str| match content.metadata.get(key) {
            Some(value) => value.to_u32().map(|v| v as usize),
            None => candle_core::bail!("the GGUF file has no `{key}`"),
        };
        let architecture = content
            .metadata
            .get("general.architecture")
            .and_then(|value| value.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if architecture != "llama" {
            candle_core::bail!("general.architecture `{architecture}`: only `llama` is served");
        }
        let heads = get("llama.attention.head_count")?;
        let hidden = get("llama.embedding_length")?;
        let vocab = match content.metadata.get("llama.vocab_size") {
            Some(value) => value.to_u32()? as usize,
            None => content.tensor_infos.get("token_embd.weight").map_or(0, |info| info.shape.dims()[0]),
        };
        Ok(Self {
            layers: get("llama.block_count")?,
            heads,
            kv_heads: get("llama.attention.head_count_kv")?,
            head_dim: hidden / heads,
            hidden,
            context: get("llama.context_length")?,
            vocab,
            rms_eps: content
                .metadata
                .get("llama.attention.layer_norm_rms_epsilon")
                .map_or(Ok(1e-5), |value| value.to_f32())? as f64,
            rope_base: content
                .metadata
                .get("llama.rope.freq_base")
                .map_or(Ok(10_000.), |value| value.to_f32())?,
        })
    }

    /// Query heads per key/value head.
    pub fn group(&self) -> usize {
        self.heads / self.kv_heads
    }
}
