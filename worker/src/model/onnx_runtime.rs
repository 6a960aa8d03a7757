//! ONNX Runtime, shared by the engines that run ONNX graphs: the `libonnxruntime.so` from
//! the onnxruntime wheel, loaded once per process at run time, and sessions on it.

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

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

/// An ONNX Runtime error as ours.
pub fn ort_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("ONNX Runtime: {error}")
}

/// A session on the graph at `graph`, with the library at `library` and `threads`
/// intra-op threads, every graph optimisation on.
pub fn session(graph: &Path, library: &Path, threads: usize) -> anyhow::Result<Session> {
    let environment = environment(library)?;
    Session::builder(environment)
        .map_err(ort_error)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(ort_error)?
        .with_intra_threads(threads)
        .map_err(ort_error)?
        .commit_from_file(graph)
        .map_err(|e| anyhow::anyhow!("ONNX Runtime: loading {}: {e}", graph.display()))
}
