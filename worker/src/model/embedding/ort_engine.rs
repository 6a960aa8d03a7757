//! The ONNX Runtime engine: the graph built at setup (pooling and normalisation inside),
//! run by the `libonnxruntime.so` from the onnxruntime wheel, loaded at run time.

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;

use super::engine::Engine;
use super::tokenize::Encoded;

/// all-MiniLM-L6-v2 on ONNX Runtime.
pub struct OrtEngine {
    session: Session,
}

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// Loads the ONNX Runtime library once per process.
fn environment(library: &Path) -> anyhow::Result<&'static Environment> {
    ENVIRONMENT
        .get_or_init(|| {
            ort::init_from(library)
                .map_err(|e| format!("loading {}: {e}", library.display()))?
                .with_name("inferpush")
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| anyhow::anyhow!("ONNX Runtime: {e}"))
}

fn ort_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("ONNX Runtime: {error}")
}

impl OrtEngine {
    /// Opens `model.onnx` with the library at `library`, using `threads` intra-op threads.
    pub fn load(model: &Path, library: &Path, threads: usize) -> anyhow::Result<Self> {
        let environment = environment(library)?;
        let session = Session::builder(environment)
            .map_err(ort_error)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(ort_error)?
            .with_intra_threads(threads)
            .map_err(ort_error)?
            .commit_from_file(model)
            .map_err(ort_error)?;
        Ok(Self { session })
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
        let embeddings = outputs["sentence_embedding"].try_extract_array::<f32>().map_err(ort_error)?;
        Ok(embeddings.outer_iter().map(|row| row.iter().copied().collect()).collect())
    }
}
