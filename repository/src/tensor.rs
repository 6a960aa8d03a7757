//! A `tensor` card's signature: the graph's, read from the file, narrowed by the card's
//! `[[tensor.inputs]]` and `[[tensor.outputs]]` (a dynamic dimension may be fixed, only
//! some outputs offered; a datatype or a fixed dimension cannot change). Where the graph
//! is not there to read (an api given the cards alone), the card's tensors are the
//! signature and must each say their datatype and shape.

use std::path::Path;

use crate::card::{TensorSection, TensorSpec};
use crate::onnx::{self, Signature, TensorInfo};

/// The field at fault and the rule.
type Fault = (String, String);

/// The signature of `section`'s graph in `dir`, as the card narrows it.
pub(crate) fn signature(section: &TensorSection, dir: &Path) -> Result<Signature, Fault> {
    let graph = dir.join(&section.onnx);
    if !graph.is_file() {
        return from_card(section).map_err(|(field, rule)| {
            (field, format!("{rule} (the graph {} is not here to read them from)", graph.display()))
        });
    }
    let read = onnx::signature(&graph).map_err(|rule| ("tensor.onnx".to_owned(), rule))?;
    let inputs = narrow("inputs", &read.inputs, &section.inputs, false)?;
    let outputs = narrow("outputs", &read.outputs, &section.outputs, true)?;
    Ok(Signature { inputs, outputs })
}

/// The card's own tensors, each complete.
fn from_card(section: &TensorSection) -> Result<Signature, Fault> {
    let complete = |side: &str, specs: &[TensorSpec]| -> Result<Vec<TensorInfo>, Fault> {
        if specs.is_empty() {
            return Err((format!("tensor.{side}"), "must list the graph's tensors".to_owned()));
        }
        specs
            .iter()
            .enumerate()
            .map(|(i, spec)| match (&spec.datatype, &spec.shape) {
                (Some(datatype), Some(shape)) => Ok(TensorInfo {
                    name: spec.name.clone(),
                    datatype: datatype.clone(),
                    shape: shape.clone(),
                }),
                _ => Err((
                    format!("tensor.{side}[{i}]"),
                    format!("`{}` needs its datatype and shape", spec.name),
                )),
            })
            .collect()
    };
    Ok(Signature {
        inputs: complete("inputs", &section.inputs)?,
        outputs: complete("outputs", &section.outputs)?,
    })
}

/// The graph's tensors of one side as the card's specs narrow them; `subset`: the card
/// may offer only some (outputs), else every graph tensor stays.
fn narrow(
    side: &str,
    graph: &[TensorInfo],
    specs: &[TensorSpec],
    subset: bool,
) -> Result<Vec<TensorInfo>, Fault> {
    let names = || graph.iter().map(|t| format!("`{}`", t.name)).collect::<Vec<_>>().join(", ");
    let mut narrowed = graph.to_vec();
    for (i, spec) in specs.iter().enumerate() {
        let field = format!("tensor.{side}[{i}]");
        let tensor = narrowed.iter_mut().find(|t| t.name == spec.name).ok_or_else(|| {
            (format!("{field}.name"), format!("`{}` is not among the graph's {side}: {}", spec.name, names()))
        })?;
        if let Some(datatype) = &spec.datatype
            && *datatype != tensor.datatype
        {
            return Err((
                format!("{field}.datatype"),
                format!("the graph's `{}` is {}, not {datatype}", tensor.name, tensor.datatype),
            ));
        }
        if let Some(shape) = &spec.shape {
            let fits = shape.len() == tensor.shape.len()
                && shape.iter().zip(&tensor.shape).all(|(card, graph)| *graph == -1 || card == graph);
            if !fits {
                return Err((
                    format!("{field}.shape"),
                    format!(
                        "{shape:?} does not narrow the graph's `{}` shape {:?}",
                        tensor.name, tensor.shape
                    ),
                ));
            }
            tensor.shape = shape.clone();
        }
    }
    if subset && !specs.is_empty() {
        narrowed.retain(|t| specs.iter().any(|s| s.name == t.name));
    }
    Ok(narrowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, datatype: &str, shape: &[i64]) -> TensorInfo {
        TensorInfo { name: name.into(), datatype: datatype.into(), shape: shape.to_vec() }
    }

    fn spec(name: &str, datatype: Option<&str>, shape: Option<&[i64]>) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            datatype: datatype.map(str::to_owned),
            shape: shape.map(<[i64]>::to_vec),
        }
    }

    #[test]
    fn the_card_fixes_dynamic_dimensions_and_picks_outputs() {
        let graph = [info("a", "FP32", &[-1, 4]), info("b", "INT64", &[-1])];
        let narrowed = narrow("inputs", &graph, &[spec("a", Some("FP32"), Some(&[2, 4]))], false).unwrap();
        assert_eq!(narrowed, [info("a", "FP32", &[2, 4]), info("b", "INT64", &[-1])]);
        let offered = narrow("outputs", &graph, &[spec("b", None, None)], true).unwrap();
        assert_eq!(offered, [info("b", "INT64", &[-1])]);
    }

    #[test]
    fn the_card_cannot_change_what_the_graph_fixes() {
        let graph = [info("a", "FP32", &[-1, 4])];
        let cases = [
            (spec("c", None, None), "tensor.inputs[0].name"),
            (spec("a", Some("INT32"), None), "tensor.inputs[0].datatype"),
            (spec("a", None, Some(&[-1, 5])), "tensor.inputs[0].shape"),
            (spec("a", None, Some(&[4])), "tensor.inputs[0].shape"),
        ];
        for (spec, field) in cases {
            assert_eq!(narrow("inputs", &graph, &[spec], false).unwrap_err().0, field);
        }
    }

    #[test]
    fn without_the_graph_the_cards_tensors_must_be_complete() {
        let section = |inputs| TensorSection {
            onnx: "missing.onnx".into(),
            inputs,
            outputs: vec![spec("y", Some("FP32"), Some(&[-1]))],
        };
        let dir = Path::new("/nonexistent");
        let full = signature(&section(vec![spec("x", Some("INT64"), Some(&[-1, 3]))]), dir).unwrap();
        assert_eq!(full.inputs, [info("x", "INT64", &[-1, 3])]);
        let (field, rule) = signature(&section(vec![spec("x", None, Some(&[1]))]), dir).unwrap_err();
        assert_eq!(field, "tensor.inputs[0]");
        assert!(rule.contains("datatype and shape") && rule.contains("missing.onnx"), "{rule}");
    }
}
