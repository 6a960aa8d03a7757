//! The ONNX Runtime engine, run by the `libonnxruntime.so` from the onnxruntime wheel,
//! loaded at run time. A graph with a `sentence_embedding` output (the one built at setup,
//! pooling and normalisation inside) gives the vectors; otherwise its first output is the
//! token vectors `[rows, tokens, dims]`, pooled here as the card says.

use std::path::Path;

use ort::session::Session;
use ort::value::Tensor;

use inferpush_repository::Pooling;

use super::engine::Engine;
use super::tokenize::Encoded;
use crate::model::onnx_runtime::{ort_error, session};

/// A sentence encoder on ONNX Runtime.
pub struct OrtEngine {
    session: Session,
    pooling: Pooling,
    normalize: bool,
}

impl OrtEngine {
    /// Opens `model.onnx` with the library at `library`, using `threads` intra-op threads.
    pub fn load(model: &Path, library: &Path, threads: usize) -> anyhow::Result<Self> {
        let session = session(model, library, threads)?;
        Ok(Self { session, pooling: Pooling::Mean, normalize: true })
    }

    /// How token vectors are pooled when the graph gives no `sentence_embedding`.
    pub fn pooled(self, pooling: Pooling, normalize: bool) -> Self {
        Self { pooling, normalize, ..self }
    }
}

impl Engine for OrtEngine {
    fn name(&self) -> &'static str {
        "ort"
    }

    fn embed(&mut self, batch: &Encoded) -> anyhow::Result<Vec<Vec<f32>>> {
        let shape = vec![batch.rows as i64, batch.seq_len as i64];
        let tensor = |data: &Vec<i64>| Tensor::from_array((shape.clone(), data.clone())).map_err(ort_error);
        let outputs = self
            .session
            .run(ort::inputs![
                "input_ids" => tensor(&batch.input_ids)?,
                "attention_mask" => tensor(&batch.attention_mask)?,
                "token_type_ids" => tensor(&batch.token_type_ids)?,
            ])
            .map_err(ort_error)?;
        if let Some(pooled) = outputs.get("sentence_embedding") {
            let embeddings = pooled.try_extract_array::<f32>().map_err(ort_error)?;
            return Ok(embeddings.outer_iter().map(|row| row.iter().copied().collect()).collect());
        }
        let tokens = outputs[0].try_extract_array::<f32>().map_err(ort_error)?;
        anyhow::ensure!(
            tokens.ndim() == 3,
            "the graph's first output is not token vectors [rows, tokens, dims]"
        );
        let rows = tokens
            .outer_iter()
            .enumerate()
            .map(|(row, vectors)| {
                let mask = &batch.attention_mask[row * batch.seq_len..(row + 1) * batch.seq_len];
                let mut pooled = match self.pooling {
                    Pooling::Cls => vectors.index_axis(ndarray::Axis(0), 0).iter().copied().collect(),
                    Pooling::Mean => {
                        let mut sum = vec![0f32; vectors.shape()[1]];
                        let mut count = 0f32;
                        for (vector, _) in vectors.outer_iter().zip(mask).filter(|(_, m)| **m != 0) {
                            sum.iter_mut().zip(vector.iter()).for_each(|(s, v)| *s += v);
                            count += 1.0;
                        }
                        sum.iter_mut().for_each(|s| *s /= count.max(1e-9));
                        sum
                    }
                };
                if self.normalize {
                    let norm = pooled.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                    pooled.iter_mut().for_each(|v| *v /= norm);
                }
                pooled
            })
            .collect();
        Ok(rows)
    }
}
