//! KServe's Open Inference Protocol v2 (REST), as Triton and KServe speak it: the
//! inference request and response, a model's metadata, and the error body. A `tensor`
//! model's input is the request itself, and its output the response.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The routes' prefix.
pub const V2_MODELS_PATH: &str = "/v2/models";

/// One tensor of a model's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetadataTensor {
    /// Its name.
    pub name: String,
    /// Its datatype (`FP32`, `INT64`, `INT32`, `BOOL`, …).
    pub datatype: String,
    /// Its shape, `-1` for a dynamic dimension.
    pub shape: Vec<i64>,
}

impl From<&inferpush_repository::TensorInfo> for MetadataTensor {
    fn from(tensor: &inferpush_repository::TensorInfo) -> Self {
        Self { name: tensor.name.clone(), datatype: tensor.datatype.clone(), shape: tensor.shape.clone() }
    }
}

/// `GET /v2/models/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelMetadata {
    /// The model's name.
    pub name: String,
    /// Its versions (the card's one).
    pub versions: Vec<String>,
    /// What runs it.
    pub platform: String,
    /// What it takes.
    pub inputs: Vec<MetadataTensor>,
    /// What it gives.
    pub outputs: Vec<MetadataTensor>,
}

/// One input of an inference request: its data flat in row-major order (or nested).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestInput {
    /// The graph input it feeds.
    pub name: String,
    /// Its shape.
    pub shape: Vec<i64>,
    /// Its datatype.
    pub datatype: String,
    /// Per-input parameters (accepted, unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// Its elements.
    #[schema(value_type = Vec<Object>)]
    pub data: Value,
}

/// One output a request asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestOutput {
    /// The graph output.
    pub name: String,
    /// Per-output parameters (accepted, unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
}

/// `POST /v2/models/{name}/infer`'s body, and a `tensor` model's task input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InferRequest {
    /// The caller's id for the request, echoed in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Request parameters (accepted, unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// The inputs.
    pub inputs: Vec<RequestInput>,
    /// The outputs wanted (absent: every output the model offers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<RequestOutput>>,
}

/// One output of an inference response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResponseOutput {
    /// The graph output.
    pub name: String,
    /// Its shape.
    pub shape: Vec<i64>,
    /// Its datatype.
    pub datatype: String,
    /// Its elements, flat in row-major order.
    #[schema(value_type = Vec<Object>)]
    pub data: Value,
}

/// `POST /v2/models/{name}/infer`'s answer, and a `tensor` model's task output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InferResponse {
    /// The model that answered.
    pub model_name: String,
    /// Its version.
    pub model_version: String,
    /// The request's id, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The outputs asked for.
    pub outputs: Vec<ResponseOutput>,
}

/// The protocol's error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// The task, when one was accepted (past the wait limit, or failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<crate::TaskId>,
    /// Where the task's state and result can be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_url: Option<String>,
}
