//! The inputs and outputs of an ONNX graph, read from the file's protobuf as Triton's
//! auto-complete does: names, element types and shapes (a named or unknown dimension is
//! dynamic, `-1`). Only the graph's signature is decoded; the weights are skipped over,
//! never loaded, so the api can read it too.

use std::path::Path;

use prost::Message;

/// One tensor of a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Its name in the graph.
    pub name: String,
    /// KServe's datatype name (`FP32`, `INT64`, …).
    pub datatype: String,
    /// Its shape, `-1` for a dynamic dimension.
    pub shape: Vec<i64>,
}

/// What a graph takes and gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signature {
    /// Inputs, in the graph's order (initializers listed as inputs left out).
    pub inputs: Vec<TensorInfo>,
    /// Outputs, in the graph's order.
    pub outputs: Vec<TensorInfo>,
}

// The few fields of onnx.proto that say what a graph takes and gives (field numbers are
// the ONNX specification's); everything else, weights included, is skipped.
#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<NamedTensor>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

/// A `TensorProto`, of which only the name is read.
#[derive(Clone, PartialEq, Message)]
struct NamedTensor {
    #[prost(string, tag = "8")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorTypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
struct Dimension {
    #[prost(int64, optional, tag = "1")]
    dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    dim_param: Option<String>,
}

/// KServe's name of an ONNX element type, if the tensor kind serves it.
fn datatype(elem_type: i32) -> Option<&'static str> {
    Some(match elem_type {
        1 => "FP32",
        2 => "UINT8",
        3 => "INT8",
        6 => "INT32",
        7 => "INT64",
        9 => "BOOL",
        11 => "FP64",
        _ => return None,
    })
}

/// Reads the signature of the ONNX graph at `path`.
pub fn signature(path: &Path) -> Result<Signature, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    signature_of(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The signature of an ONNX model's bytes.
pub fn signature_of(bytes: &[u8]) -> Result<Signature, String> {
    let model = ModelProto::decode(bytes).map_err(|e| format!("not an ONNX model: {e}"))?;
    let graph = model.graph.ok_or("not an ONNX model: it has no graph")?;
    let weights: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let tensors = |values: &[ValueInfoProto]| -> Result<Vec<TensorInfo>, String> {
        values.iter().filter(|v| !weights.contains(v.name.as_str())).map(tensor_info).collect()
    };
    Ok(Signature { inputs: tensors(&graph.input)?, outputs: tensors(&graph.output)? })
}

fn tensor_info(value: &ValueInfoProto) -> Result<TensorInfo, String> {
    let tensor = value
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or_else(|| format!("`{}` is not a tensor (sequences and maps are not served)", value.name))?;
    let datatype = datatype(tensor.elem_type).ok_or_else(|| {
        format!("`{}` has ONNX element type {}, which is not served", value.name, tensor.elem_type)
    })?;
    let shape = tensor
        .shape
        .as_ref()
        .map(|shape| shape.dim.iter().map(|d| d.dim_value.filter(|v| *v > 0).unwrap_or(-1)).collect())
        .unwrap_or_default();
    Ok(TensorInfo { name: value.name.clone(), datatype: datatype.to_owned(), shape })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(name: &str, elem_type: i32, dims: &[Option<i64>]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|d| Dimension { dim_value: *d, dim_param: d.is_none().then(|| "batch".to_owned()) })
            .collect();
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto { elem_type, shape: Some(TensorShapeProto { dim }) }),
            }),
        }
    }

    #[test]
    fn a_graphs_inputs_and_outputs_with_dynamic_dimensions_and_no_weights() {
        let graph = GraphProto {
            initializer: vec![NamedTensor { name: "weight".into() }],
            input: vec![
                value("ids", 7, &[None, None]),
                value("weight", 1, &[Some(4)]),
                value("flag", 9, &[Some(1)]),
            ],
            output: vec![value("scores", 1, &[None, Some(3)])],
        };
        let bytes = ModelProto { graph: Some(graph) }.encode_to_vec();
        let signature = signature_of(&bytes).unwrap();
        let names: Vec<_> = signature.inputs.iter().map(|t| (t.name.as_str(), t.datatype.as_str())).collect();
        assert_eq!(names, [("ids", "INT64"), ("flag", "BOOL")], "initializers are not inputs");
        assert_eq!(signature.inputs[0].shape, [-1, -1]);
        assert_eq!(
            signature.outputs[0],
            TensorInfo { name: "scores".into(), datatype: "FP32".into(), shape: vec![-1, 3] }
        );
    }

    #[test]
    fn what_is_not_a_served_tensor_graph_is_named() {
        assert!(signature_of(b"\xff\xff").unwrap_err().contains("not an ONNX model"));
        let graph = GraphProto { input: vec![value("text", 8, &[Some(1)])], ..Default::default() };
        let error = signature_of(&ModelProto { graph: Some(graph) }.encode_to_vec()).unwrap_err();
        assert!(error.contains("`text`") && error.contains("element type 8"), "{error}");
    }
}
