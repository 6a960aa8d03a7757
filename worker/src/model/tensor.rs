//! The `tensor` kind: any ONNX graph on ONNX Runtime, its input and output a KServe v2
//! inference request and response. One thread owns the session; requests of the model
//! whose inputs agree past the batch dimension run together, concatenated along it, up
//! to the card's `max_batch_size` rows, when the graph's batch dimension is dynamic, and
//! each gets its own rows of every output back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};

use async_trait::async_trait;
use inferpush_protocol::catalogue::tensor::{self, Parsed, Tensor, TensorData};
use inferpush_protocol::kserve::{InferResponse, ResponseOutput};
use inferpush_repository::{Model as RepositoryModel, Signature};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, ValueType};
use serde_json::Value;
use tokio::sync::oneshot;

use super::onnx_runtime::{ort_error, session};
use super::{Model, ModelError, Run, ServeSettings};

/// One request's outputs: name, shape and elements.
type Outputs = Vec<(String, Vec<i64>, TensorData)>;

struct Job {
    request: Parsed,
    reply: oneshot::Sender<Result<Outputs, String>>,
}

/// A tensor model, served.
pub struct TensorModel {
    name: String,
    version: String,
    signature: Signature,
    max_batch_size: usize,
    queue: Sender<Job>,
    weights_sha256: String,
    passes: Arc<AtomicU64>,
}

impl TensorModel {
    /// Opens the card's graph on ONNX Runtime and starts the thread that runs it.
    pub fn load(model: &RepositoryModel, settings: &ServeSettings) -> anyhow::Result<Self> {
        let card = &model.card;
        let section =
            card.tensor.as_ref().ok_or_else(|| anyhow::anyhow!("`{}` is not a tensor model", card.name))?;
        let signature =
            model.signature.clone().ok_or_else(|| anyhow::anyhow!("`{}` has no signature", card.name))?;
        let library = settings.repository.join("onnxruntime").join("libonnxruntime.so");
        anyhow::ensure!(
            library.exists(),
            "the tensor kind runs on ONNX Runtime: {} is missing, run `scripts/fetch-model.sh`",
            library.display()
        );
        let session = session(&model.file(&section.onnx), &library, settings.threads)?;
        let max_batch_size = settings.max_batch_size.unwrap_or(card.batching.max_batch_size).max(1);
        let batched = tensor::batches(&signature);
        let (queue, jobs) = mpsc::channel();
        let rows = if batched { max_batch_size } else { 1 };
        let passes = Arc::new(AtomicU64::new(0));
        let counted = passes.clone();
        std::thread::Builder::new()
            .name(format!("inferpush-tensor-{}", card.name))
            .spawn(move || serve(session, jobs, rows, batched, &counted))?;
        tracing::info!(model = card.name, batched, max_batch_size, "tensor model loaded");
        Ok(Self {
            name: card.name.clone(),
            version: card.version.clone(),
            signature,
            max_batch_size,
            queue,
            weights_sha256: card.sha256_of(&section.onnx).unwrap_or_default().to_owned(),
            passes,
        })
    }

    /// Forward passes run so far (requests run together count once).
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }

    /// The SHA-256 of the graph it runs.
    pub fn weights_sha256(&self) -> &str {
        &self.weights_sha256
    }
}

#[async_trait]
impl Model for TensorModel {
    async fn infer(&self, input: &Value, _run: Run) -> Result<Value, ModelError> {
        let request = tensor::parse(input, &self.signature, self.max_batch_size)
            .map_err(|e| ModelError::InvalidInput(e.to_string()))?;
        let id = request.id.clone();
        let (reply, answer) = oneshot::channel();
        let stopped = || ModelError::Failed("the inference thread has stopped".into());
        self.queue.send(Job { request, reply }).map_err(|_| stopped())?;
        let outputs = answer.await.map_err(|_| stopped())?.map_err(ModelError::Failed)?;
        let outputs = outputs
            .into_iter()
            .map(|(name, shape, data)| ResponseOutput {
                name,
                shape,
                datatype: datatype(&data).into(),
                data: data.to_json(),
            })
            .collect();
        let response =
            InferResponse { model_name: self.name.clone(), model_version: self.version.clone(), id, outputs };
        serde_json::to_value(response).map_err(|e| ModelError::Failed(e.to_string()))
    }
}

fn datatype(data: &TensorData) -> &'static str {
    match data {
        TensorData::Bool(_) => "BOOL",
        TensorData::U8(_) => "UINT8",
        TensorData::I8(_) => "INT8",
        TensorData::I32(_) => "INT32",
        TensorData::I64(_) => "INT64",
        TensorData::F32(_) => "FP32",
        TensorData::F64(_) => "FP64",
    }
}

/// The thread: takes the oldest waiting request and those behind it that agree with it
/// past the batch dimension, up to `max_rows`, runs them as one, and answers each.
fn serve(mut session: Session, jobs: Receiver<Job>, max_rows: usize, batched: bool, passes: &AtomicU64) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match jobs.recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => return,
            }
        }
        waiting.extend(jobs.try_iter());
        let first = waiting.pop_front().expect("one is waiting");
        let mut pass = vec![first];
        if batched {
            let shapes = pass[0].request.trailing_shapes();
            let mut rows = pass[0].request.rows();
            let mut rest = VecDeque::new();
            while let Some(job) = waiting.pop_front() {
                if job.request.trailing_shapes() == shapes && rows + job.request.rows() <= max_rows {
                    rows += job.request.rows();
                    pass.push(job);
                } else {
                    rest.push_back(job);
                }
            }
            waiting = rest;
        }
        let requests: Vec<&Parsed> = pass.iter().map(|job| &job.request).collect();
        passes.fetch_add(1, Ordering::Relaxed);
        match run_pass(&mut session, &requests) {
            Ok(answers) => {
                for (job, outputs) in pass.into_iter().zip(answers) {
                    let _ = job.reply.send(Ok(outputs));
                }
            }
            // A pass of several that fails is run again request by request, so only the
            // request that cannot run fails.
            Err(_) if pass.len() > 1 => {
                for job in pass {
                    let outcome = run_pass(&mut session, &[&job.request]).map(|mut one| one.remove(0));
                    let _ = job.reply.send(outcome.map_err(|e| format!("{e:#}")));
                }
            }
            Err(error) => {
                for job in pass {
                    let _ = job.reply.send(Err(format!("{error:#}")));
                }
            }
        }
    }
}

/// Runs `requests` as one pass (their inputs concatenated along the batch dimension) and
/// splits every output back by each request's rows.
fn run_pass(session: &mut Session, requests: &[&Parsed]) -> anyhow::Result<Vec<Outputs>> {
    let first = requests[0];
    let total_rows: usize = requests.iter().map(|r| r.rows()).sum();
    let mut inputs: Vec<(String, SessionInputValue<'static>)> = Vec::with_capacity(first.inputs.len());
    for (i, input) in first.inputs.iter().enumerate() {
        let parts: Vec<&Tensor> = requests.iter().map(|r| &r.inputs[i]).collect();
        let mut shape = input.shape.clone();
        if requests.len() > 1 {
            shape[0] = total_rows as i64;
        }
        inputs.push((input.name.clone(), value(shape, &parts)?));
    }
    let outputs = session.run(inputs).map_err(ort_error)?;
    let mut answers: Vec<Outputs> = vec![Vec::new(); requests.len()];
    for name in &first.outputs {
        let output = outputs.get(name).ok_or_else(|| anyhow::anyhow!("the graph gave no output `{name}`"))?;
        let (shape, data) = read(output)?;
        if requests.len() == 1 {
            answers[0].push((name.clone(), shape, data));
            continue;
        }
        anyhow::ensure!(
            shape.first() == Some(&(total_rows as i64)),
            "output `{name}` has shape {shape:?}, not {total_rows} rows: it cannot be split between requests"
        );
        let per_row: usize = shape[1..].iter().product::<i64>() as usize;
        let mut start = 0;
        for (answer, request) in answers.iter_mut().zip(requests) {
            let rows = request.rows();
            let mut own = shape.clone();
            own[0] = rows as i64;
            answer.push((name.clone(), own, slice(&data, start * per_row, (start + rows) * per_row)));
            start += rows;
        }
    }
    Ok(answers)
}

/// One input of a pass: `parts`' elements, concatenated, as an ONNX Runtime tensor of `shape`.
fn value(shape: Vec<i64>, parts: &[&Tensor]) -> anyhow::Result<SessionInputValue<'static>> {
    macro_rules! concat {
        ($variant:ident) => {{
            let data: Vec<_> = parts
                .iter()
                .flat_map(|p| match &p.data {
                    TensorData::$variant(v) => v.clone(),
                    _ => unreachable!("every part of one input has its datatype"),
                })
                .collect();
            ort::value::Tensor::from_array((shape, data)).map_err(ort_error)?.into()
        }};
    }
    Ok(match &parts[0].data {
        TensorData::Bool(_) => concat!(Bool),
        TensorData::U8(_) => concat!(U8),
        TensorData::I8(_) => concat!(I8),
        TensorData::I32(_) => concat!(I32),
        TensorData::I64(_) => concat!(I64),
        TensorData::F32(_) => concat!(F32),
        TensorData::F64(_) => concat!(F64),
    })
}

/// An output's shape and elements.
fn read(output: &DynValue) -> anyhow::Result<(Vec<i64>, TensorData)> {
    let ValueType::Tensor { ty, .. } = output.dtype() else {
        anyhow::bail!("an output is not a tensor");
    };
    macro_rules! extract {
        ($t:ty, $variant:ident) => {{
            let (shape, data) = output.try_extract_tensor::<$t>().map_err(ort_error)?;
            (shape.to_vec(), TensorData::$variant(data.to_vec()))
        }};
    }
    Ok(match ty {
        TensorElementType::Bool => extract!(bool, Bool),
        TensorElementType::Uint8 => extract!(u8, U8),
        TensorElementType::Int8 => extract!(i8, I8),
        TensorElementType::Int32 => extract!(i32, I32),
        TensorElementType::Int64 => extract!(i64, I64),
        TensorElementType::Float32 => extract!(f32, F32),
        TensorElementType::Float64 => extract!(f64, F64),
        other => anyhow::bail!("an output of element type {other:?} is not served"),
    })
}

/// Elements `start..end` of `data`.
fn slice(data: &TensorData, start: usize, end: usize) -> TensorData {
    match data {
        TensorData::Bool(v) => TensorData::Bool(v[start..end].to_vec()),
        TensorData::U8(v) => TensorData::U8(v[start..end].to_vec()),
        TensorData::I8(v) => TensorData::I8(v[start..end].to_vec()),
        TensorData::I32(v) => TensorData::I32(v[start..end].to_vec()),
        TensorData::I64(v) => TensorData::I64(v[start..end].to_vec()),
        TensorData::F32(v) => TensorData::F32(v[start..end].to_vec()),
        TensorData::F64(v) => TensorData::F64(v[start..end].to_vec()),
    }
}
