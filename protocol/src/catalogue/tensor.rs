//! The `tensor` kind's input rules: a KServe v2 inference request whose inputs are exactly
//! the model's, each of its datatype, of a shape its signature allows (a dynamic
//! dimension takes any size, the batch dimension at most `max_batch_size`), with as many
//! elements as its shape says, each of its type. The worker runs what [`parse`] gives.

use inferpush_repository::{Signature, TensorInfo};
use serde_json::Value;

use super::InputError;

/// A problem with one tensor: `side:name` (`input:ids`) and what is wrong.
fn invalid(tensor: &str, problem: impl Into<String>) -> InputError {
    let (side, name) = tensor.split_once(':').unwrap_or(("input", tensor));
    InputError::Tensor { side: side.to_owned(), name: name.to_owned(), problem: problem.into() }
}
use crate::kserve::InferRequest;

/// A tensor's elements, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// `BOOL`.
    Bool(Vec<bool>),
    /// `UINT8`.
    U8(Vec<u8>),
    /// `INT8`.
    I8(Vec<i8>),
    /// `INT32`.
    I32(Vec<i32>),
    /// `INT64`.
    I64(Vec<i64>),
    /// `FP32`.
    F32(Vec<f32>),
    /// `FP64`.
    F64(Vec<f64>),
}

impl TensorData {
    /// How many elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::Bool(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
        }
    }

    /// True when it has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as JSON (an array).
    pub fn to_json(&self) -> Value {
        match self {
            TensorData::Bool(v) => serde_json::json!(v),
            TensorData::U8(v) => serde_json::json!(v),
            TensorData::I8(v) => serde_json::json!(v),
            TensorData::I32(v) => serde_json::json!(v),
            TensorData::I64(v) => serde_json::json!(v),
            TensorData::F32(v) => serde_json::json!(v),
            TensorData::F64(v) => serde_json::json!(v),
        }
    }
}

/// One input, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The graph input.
    pub name: String,
    /// Its shape.
    pub shape: Vec<i64>,
    /// Its elements.
    pub data: TensorData,
}

/// A request, checked: every input of the model in its order, and the outputs wanted.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The caller's id, echoed.
    pub id: Option<String>,
    /// The inputs, in the signature's order.
    pub inputs: Vec<Tensor>,
    /// The outputs wanted, in the signature's order.
    pub outputs: Vec<String>,
}

impl Parsed {
    /// Rows along the batch dimension (the first input's first dimension).
    pub fn rows(&self) -> usize {
        self.inputs.first().and_then(|t| t.shape.first()).map_or(1, |rows| *rows as usize)
    }

    /// Every input's shape past the batch dimension: requests that agree on them can run
    /// in one pass.
    pub fn trailing_shapes(&self) -> Vec<Vec<i64>> {
        self.inputs.iter().map(|t| t.shape.iter().skip(1).copied().collect()).collect()
    }
}

/// True when every input's first dimension is dynamic: requests batch along it.
pub fn batches(signature: &Signature) -> bool {
    !signature.inputs.is_empty() && signature.inputs.iter().all(|t| t.shape.first() == Some(&-1))
}

/// Checks a request against `signature`, with at most `max_batch_size` rows when the
/// model batches.
pub fn parse(input: &Value, signature: &Signature, max_batch_size: usize) -> Result<Parsed, InputError> {
    let request: InferRequest = serde_json::from_value(input.clone())
        .map_err(|e| super::invalid("input", format!("is not a KServe v2 inference request: {e}")))?;
    if let Some(unknown) = request.inputs.iter().find(|i| !signature.inputs.iter().any(|t| t.name == i.name))
    {
        return Err(invalid(
            &format!("input:{}", unknown.name),
            format!("is not an input of this model; its inputs are {}", names(&signature.inputs)),
        ));
    }
    let batched = batches(signature);
    let mut rows = None;
    let mut inputs = Vec::with_capacity(signature.inputs.len());
    for expected in &signature.inputs {
        let given: Vec<_> = request.inputs.iter().filter(|i| i.name == expected.name).collect();
        let given = match given.as_slice() {
            [one] => *one,
            [] => return Err(invalid(&format!("input:{}", expected.name), "is missing")),
            _ => return Err(invalid(&format!("input:{}", expected.name), "is given more than once")),
        };
        let field = format!("input:{}", expected.name);
        if given.datatype != expected.datatype {
            return Err(invalid(&field, format!("is {}, not {}", expected.datatype, given.datatype)));
        }
        check_shape(&field, &given.shape, expected)?;
        if batched {
            let first = given.shape[0];
            if first as usize > max_batch_size {
                return Err(invalid(
                    &field,
                    format!("has {first} rows; this model takes at most {max_batch_size}"),
                ));
            }
            if *rows.get_or_insert(first) != first {
                return Err(invalid(&field, "has another number of rows than the other inputs"));
            }
        }
        let data = typed(&field, &given.data, &expected.datatype)?;
        let elements: i64 = given.shape.iter().product();
        if data.len() as i64 != elements {
            return Err(invalid(
                &field,
                format!("has {} elements; its shape {:?} holds {elements}", data.len(), given.shape),
            ));
        }
        inputs.push(Tensor { name: expected.name.clone(), shape: given.shape.clone(), data });
    }
    let outputs = match &request.outputs {
        None => signature.outputs.iter().map(|t| t.name.clone()).collect(),
        Some(wanted) => {
            if let Some(unknown) = wanted.iter().find(|w| !signature.outputs.iter().any(|t| t.name == w.name))
            {
                return Err(invalid(
                    &format!("output:{}", unknown.name),
                    format!("is not an output of this model; its outputs are {}", names(&signature.outputs)),
                ));
            }
            signature
                .outputs
                .iter()
                .filter(|t| wanted.iter().any(|w| w.name == t.name))
                .map(|t| t.name.clone())
                .collect()
        }
    };
    Ok(Parsed { id: request.id, inputs, outputs })
}

/// About how many bytes a valid request's result takes: every output asked for, its
/// dynamic dimensions taken from the first input's (at most 24 characters per element).
pub fn result_bytes(input: &Value, signature: &Signature, max_batch_size: usize) -> u64 {
    let Ok(parsed) = parse(input, signature, max_batch_size) else { return super::RECORD_OVERHEAD_BYTES };
    let first = parsed.inputs.first().map(|t| t.shape.clone()).unwrap_or_default();
    let elements: u64 = signature
        .outputs
        .iter()
        .filter(|t| parsed.outputs.contains(&t.name))
        .map(|t| {
            let dims = t.shape.iter().enumerate();
            dims.map(|(i, d)| if *d == -1 { first.get(i).copied().unwrap_or(1) } else { *d }).product::<i64>()
                as u64
        })
        .sum();
    elements * 24 + super::RECORD_OVERHEAD_BYTES
}

fn names(tensors: &[TensorInfo]) -> String {
    tensors.iter().map(|t| format!("`{}`", t.name)).collect::<Vec<_>>().join(", ")
}

fn check_shape(field: &str, shape: &[i64], expected: &TensorInfo) -> Result<(), InputError> {
    let fits = shape.len() == expected.shape.len()
        && shape
            .iter()
            .zip(&expected.shape)
            .all(|(given, want)| *given >= 1 && (*want == -1 || given == want));
    if fits {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("has shape {shape:?}; the model takes {:?} (-1: any size)", expected.shape),
        ))
    }
}

/// The elements of `data` (flat, or nested in row-major order) as `datatype`.
fn typed(field: &str, data: &Value, datatype: &str) -> Result<TensorData, InputError> {
    let mut flat = Vec::new();
    flatten(data, &mut flat);
    let wrong = |i: usize, what: &str| invalid(field, format!("element {i} is not {what}"));
    macro_rules! numbers {
        ($variant:ident, $convert:expr, $what:expr) => {
            TensorData::$variant(
                flat.iter()
                    .enumerate()
                    .map(|(i, v)| $convert(v).ok_or_else(|| wrong(i, $what)))
                    .collect::<Result<_, _>>()?,
            )
        };
    }
    Ok(match datatype {
        "BOOL" => numbers!(Bool, |v: &&Value| v.as_bool(), "a boolean"),
        "UINT8" => {
            numbers!(U8, |v: &&Value| v.as_u64().and_then(|n| u8::try_from(n).ok()), "an integer 0–255")
        }
        "INT8" => numbers!(I8, |v: &&Value| v.as_i64().and_then(|n| i8::try_from(n).ok()), "an INT8"),
        "INT32" => numbers!(I32, |v: &&Value| v.as_i64().and_then(|n| i32::try_from(n).ok()), "an INT32"),
        "INT64" => numbers!(I64, |v: &&Value| v.as_i64(), "an INT64"),
        "FP32" => numbers!(F32, |v: &&Value| v.as_f64().map(|n| n as f32), "a number"),
        "FP64" => numbers!(F64, |v: &&Value| v.as_f64(), "a number"),
        other => return Err(invalid(field, format!("has datatype {other}, which is not served"))),
    })
}

fn flatten<'a>(value: &'a Value, into: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, into)),
        other => into.push(other),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn signature() -> Signature {
        let info = |name: &str, datatype: &str, shape: &[i64]| TensorInfo {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
        };
        Signature {
            inputs: vec![info("ids", "INT64", &[-1, -1]), info("mask", "BOOL", &[-1, 2])],
            outputs: vec![info("scores", "FP32", &[-1, 3]), info("pooled", "FP32", &[-1])],
        }
    }

    fn request(ids: Value, mask: Value) -> Value {
        json!({"inputs": [
            {"name": "mask", "shape": [1, 2], "datatype": "BOOL", "data": mask},
            {"name": "ids", "shape": [1, 2], "datatype": "INT64", "data": ids},
        ]})
    }

    #[test]
    fn a_request_is_typed_in_the_signatures_order_with_every_output_by_default() {
        let parsed = parse(&request(json!([[7, 8]]), json!([true, false])), &signature(), 4).unwrap();
        assert_eq!(parsed.inputs[0].data, TensorData::I64(vec![7, 8]));
        assert_eq!(parsed.inputs[1].data, TensorData::Bool(vec![true, false]));
        assert_eq!((parsed.rows(), parsed.outputs.len()), (1, 2));
        assert_eq!(parsed.trailing_shapes(), [vec![2], vec![2]]);
        let mut some = request(json!([7, 8]), json!([true, true]));
        some["outputs"] = json!([{"name": "pooled"}]);
        assert_eq!(parse(&some, &signature(), 4).unwrap().outputs, ["pooled"]);
    }

    #[test]
    fn what_does_not_match_names_the_tensor() {
        let ok = request(json!([7, 8]), json!([true, false]));
        let mut cases = Vec::new();
        let mut case = |edit: &dyn Fn(&mut Value), tensor: &str| {
            let mut body = ok.clone();
            edit(&mut body);
            cases.push((body, tensor.to_owned()));
        };
        case(&|b| b["inputs"][1]["datatype"] = json!("INT32"), "input tensor `ids`");
        case(&|b| b["inputs"][0]["shape"] = json!([1, 3]), "input tensor `mask`");
        case(&|b| b["inputs"][1]["data"] = json!([7]), "input tensor `ids`");
        case(&|b| b["inputs"][1]["data"] = json!([7, 1.5]), "input tensor `ids`");
        case(&|b| b["inputs"][0]["data"] = json!([1, 0]), "input tensor `mask`");
        case(&|b| b["inputs"][1]["name"] = json!("other"), "input tensor `other`");
        case(
            &|b| {
                b["inputs"].as_array_mut().unwrap().remove(1);
            },
            "input tensor `ids`",
        );
        case(&|b| b["outputs"] = json!([{"name": "logits"}]), "output tensor `logits`");
        case(
            &|b| {
                b["inputs"][1]["shape"] = json!([9, 1]);
                b["inputs"][1]["data"] = json!([1, 2, 3, 4, 5, 6, 7, 8, 9]);
            },
            "input tensor `ids`",
        );
        for (body, tensor) in cases {
            let error = parse(&body, &signature(), 4).unwrap_err().to_string();
            assert!(error.starts_with(&tensor), "{body}: {error}");
        }
        assert!(parse(&json!({"inputs": 3}), &signature(), 4).is_err());
    }
}
