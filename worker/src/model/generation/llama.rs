//! The llama architecture over a GGUF file's quantized weights, as llama.cpp runs it, with
//! one key/value cache per sequence so that sequences at different positions decode
//! together: every weight matrix is applied to all of a step's tokens at once (the weights
//! are read once per step, whatever the batch), and only attention, which depends on each
//! sequence's own past, runs per sequence. On a CPU with Q4_1 or Q8_0 weights the network
//! runs over plain slices ([`super::plain`]); elsewhere (CUDA, other types) through candle.

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::Embedding;
use candle_nn::kv_cache::KvCache;
use candle_transformers::quantized_nn::RmsNorm;

use inferpush_quantized::QuantizedMatrix;

use inferpush_llama::{Shape, network as plain};

/// A weight matrix: Q4_1 or Q8_0 on a CPU as llama.cpp computes it ([`QuantizedMatrix`]), anything else
/// through candle.
enum Matrix {
    Quantized(QuantizedMatrix),
    Candle(QMatMul),
}

impl Matrix {
    fn new(tensor: QTensor, device: &Device) -> Result<Self> {
        if device.is_cpu()
            && let Some(matrix) = QuantizedMatrix::of(&tensor)?
        {
            return Ok(Self::Quantized(matrix));
        }
        Ok(Self::Candle(QMatMul::from_qtensor(tensor)?))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Quantized(matrix) => matrix.forward(x),
            Self::Candle(matrix) => matrix.forward(x),
        }
    }
}

struct Block {
    attention_norm: RmsNorm,
    q: Matrix,
    k: Matrix,
    v: Matrix,
    out: Matrix,
    ffn_norm: RmsNorm,
    gate: Matrix,
    up: Matrix,
    down: Matrix,
}

/// One sequence's past: the keys and values of every token it has seen, per block.
pub struct Cache {
    past: Past,
    len: usize,
}

enum Past {
    Plain(Box<plain::Past>),
    Candle(Vec<KvCache>),
}

impl Past {
    fn plain(&mut self) -> Result<&mut plain::Past> {
        match self {
            Self::Plain(past) => Ok(past),
            Self::Candle(_) => candle_core::bail!("a cache of the other network"),
        }
    }

    fn candle(&mut self) -> Result<&mut [KvCache]> {
        match self {
            Self::Candle(blocks) => Ok(blocks),
            Self::Plain(_) => candle_core::bail!("a cache of the other network"),
        }
    }
}

impl Cache {
    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first token.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The network, loaded on `device`.
pub struct Llama {
    shape: Shape,
    network: Network,
}

enum Network {
    Plain(plain::Plain),
    Candle(Candle),
}

/// The tensors of a GGUF file, read on the CPU.
struct Source<'a, R> {
    content: &'a Content,
    reader: &'a mut R,
}

impl<R: std::io::Read + std::io::Seek> plain::Tensors for Source<'_, R> {
    fn tensor(&mut self, name: &str) -> Result<QTensor> {
        self.content.tensor(self.reader, name, &Device::Cpu)
    }

    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }
}

impl Llama {
    /// Reads the weights `content` describes from `reader`.
    pub fn load<R: std::io::Read + std::io::Seek>(
        content: &Content,
        reader: &mut R,
        device: &Device,
    ) -> Result<Self> {
        let shape = Shape::of(content)?;
        if device.is_cpu()
            && let Some(network) = plain::Plain::load(&shape, &mut Source { content, reader })?
        {
            return Ok(Self { shape, network: Network::Plain(network) });
        }
        Self::load_through_candle(content, reader, device)
    }

    /// As [`Llama::load`], but through candle's tensors on any device, a CPU too: what
    /// runs on a GPU, for comparing it with the CPU network on a machine without one.
    pub fn load_through_candle<R: std::io::Read + std::io::Seek>(
        content: &Content,
        reader: &mut R,
        device: &Device,
    ) -> Result<Self> {
        let shape = Shape::of(content)?;
        let network = Network::Candle(Candle::load(&shape, content, reader, device)?);
        Ok(Self { shape, network })
    }

    /// The network's shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// An empty past for a new sequence.
    pub fn cache(&self) -> Cache {
        let past = match &self.network {
            Network::Plain(network) => Past::Plain(Box::new(network.past())),
            Network::Candle(_) => {
                Past::Candle((0..self.shape.layers).map(|_| KvCache::new(1, CACHE_CHUNK)).collect())
            }
        };
        Cache { past, len: 0 }
    }

    /// Advances several sequences in one pass: each `(tokens, its past)` pair runs its
    /// tokens after what its past holds (one new token of a sequence in flight, or a whole
    /// prompt of one joining). The logits of each pair's last token, one row per pair
    /// (`(pairs, vocab)`). On a CPU every weight is read once for all the rows; elsewhere
    /// the prompts run one by one beside one step of the single tokens.
    pub fn advance(&self, batch: &mut [(&[u32], &mut Cache)]) -> Result<Tensor> {
        for (tokens, cache) in batch.iter() {
            if tokens.is_empty() {
                candle_core::bail!("no tokens to run");
            }
            self.check_room(cache.len + tokens.len())?;
        }
        let logits = match &self.network {
            Network::Plain(network) => {
                let (mut tokens, mut owners, mut wanted) = (Vec::new(), Vec::new(), Vec::new());
                for (owner, (run, _)) in batch.iter().enumerate() {
                    tokens.extend_from_slice(run);
                    owners.extend(std::iter::repeat_n(owner, run.len()));
                    wanted.push(tokens.len() - 1);
                }
                let starts: Vec<usize> = batch.iter().map(|(_, cache)| cache.len).collect();
                let mut pasts =
                    batch.iter_mut().map(|(_, cache)| cache.past.plain()).collect::<Result<Vec<_>>>()?;
                let logits = network.forward(&tokens, &owners, &mut pasts, &starts, &wanted);
                Tensor::from_vec(logits, (wanted.len(), self.shape.vocab), &Device::Cpu)?
            }
            Network::Candle(network) => {
                let mut rows = Vec::with_capacity(batch.len());
                let mut singles = Vec::new();
                for (index, (run, cache)) in batch.iter_mut().enumerate() {
                    if run.len() == 1 {
                        singles.push(index);
                        rows.push(None);
                    } else {
                        rows.push(Some(network.prefill(&self.shape, run, cache)?));
                    }
                }
                if !singles.is_empty() {
                    let mut step: Vec<(u32, &mut Cache)> = batch
                        .iter_mut()
                        .filter(|(run, _)| run.len() == 1)
                        .map(|(run, cache)| (run[0], &mut **cache))
                        .collect();
                    let stepped = network.step(&self.shape, &mut step)?;
                    for (row, index) in singles.into_iter().enumerate() {
                        rows[index] = Some(stepped.narrow(0, row, 1)?);
                    }
                }
                Tensor::cat(&rows.into_iter().flatten().collect::<Vec<_>>(), 0)?
            }
        };
        for (tokens, cache) in batch.iter_mut() {
            cache.len += tokens.len();
        }
        Ok(logits)
    }

    fn check_room(&self, len: usize) -> Result<()> {
        if len > self.shape.context {
            candle_core::bail!("{len} tokens is past the model's context of {}", self.shape.context);
        }
        Ok(())
    }

    /// The index of the largest logit of each row.
    pub fn argmax(logits: &Tensor) -> Result<Vec<u32>> {
        logits.argmax(D::Minus1)?.to_vec1()
    }
}

/// The network through candle's tensors, on any device.
struct Candle {
    embedding: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    output: Matrix,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

/// Keys and values are allocated in chunks of this many positions, so a short sequence
/// holds little memory and a long one grows without copying at every token.
const CACHE_CHUNK: usize = 256;

impl Candle {
    fn load<R: std::io::Read + std::io::Seek>(
        shape: &Shape,
        content: &Content,
        reader: &mut R,
        device: &Device,
    ) -> Result<Self> {
        let mut tensor = |name: &str| content.tensor(reader, name, device);
        let embedding_weights = tensor("token_embd.weight")?;
        let embedding = Embedding::new(embedding_weights.dequantize(device)?, shape.hidden);
        let norm = RmsNorm::from_qtensor(tensor("output_norm.weight")?, shape.rms_eps)?;
        // Models with tied embeddings have no `output.weight`.
        let output = match content.tensor_infos.contains_key("output.weight") {
            true => Matrix::new(tensor("output.weight")?, device)?,
            false => Matrix::new(embedding_weights, device)?,
        };
        let mut blocks = Vec::with_capacity(shape.layers);
        for layer in 0..shape.layers {
            let mut matrix = |name: &str| Matrix::new(tensor(&format!("blk.{layer}.{name}.weight"))?, device);
            let (q, k, v, out) =
                (matrix("attn_q")?, matrix("attn_k")?, matrix("attn_v")?, matrix("attn_output")?);
            let (gate, up, down) = (matrix("ffn_gate")?, matrix("ffn_up")?, matrix("ffn_down")?);
            let mut norm = |name: &str| {
                RmsNorm::from_qtensor(tensor(&format!("blk.{layer}.{name}.weight"))?, shape.rms_eps)
            };
            let (attention_norm, ffn_norm) = (norm("attn_norm")?, norm("ffn_norm")?);
            blocks.push(Block { attention_norm, q, k, v, out, ffn_norm, gate, up, down });
        }
        let (cos, sin) = rotations(shape, device)?;
        Ok(Self { embedding, blocks, norm, output, cos, sin, device: device.clone() })
    }

    /// The logits of the last of one sequence's `tokens`.
    fn prefill(&self, shape: &Shape, tokens: &[u32], cache: &mut Cache) -> Result<Tensor> {
        let n = tokens.len();
        let start = cache.len;
        let positions: Vec<u32> = (start..start + n).map(|p| p as u32).collect();
        let mut x = self.embedding.forward(&Tensor::new(tokens, &self.device)?)?;
        let mask = causal_mask(n, start, &self.device)?;
        for (block, past) in self.blocks.iter().zip(cache.past.candle()?.iter_mut()) {
            let (q, k, v) = self.projections(shape, block, &x, &positions)?;
            // (heads, n, dim) from (n, heads, dim): one sequence, all its new tokens.
            let q = q.transpose(0, 1)?.contiguous()?;
            let k = k.transpose(0, 1)?.contiguous()?;
            let v = v.transpose(0, 1)?.contiguous()?;
            let y = attend(shape, &q, &k, &v, past, Some(&mask))?;
            x = self.finish_block(block, &x, &y.transpose(0, 1)?.reshape((n, shape.hidden))?)?;
        }
        let x = x.narrow(0, n - 1, 1)?;
        self.output.forward(&self.norm.forward(&x)?)?.to_dtype(DType::F32)
    }

    fn step(&self, shape: &Shape, batch: &mut [(u32, &mut Cache)]) -> Result<Tensor> {
        let tokens: Vec<u32> = batch.iter().map(|(token, _)| *token).collect();
        let positions: Vec<u32> = batch.iter().map(|(_, cache)| cache.len as u32).collect();
        let mut x = self.embedding.forward(&Tensor::new(tokens.as_slice(), &self.device)?)?;
        for (layer, block) in self.blocks.iter().enumerate() {
            let (q, k, v) = self.projections(shape, block, &x, &positions)?;
            let mut ys = Vec::with_capacity(batch.len());
            for (row, (_, cache)) in batch.iter_mut().enumerate() {
                // (heads, 1, dim): this sequence's one new token.
                let q = q.narrow(0, row, 1)?.transpose(0, 1)?;
                let k = k.narrow(0, row, 1)?.transpose(0, 1)?.contiguous()?;
                let v = v.narrow(0, row, 1)?.transpose(0, 1)?.contiguous()?;
                let y = attend(shape, &q, &k, &v, &mut cache.past.candle()?[layer], None)?;
                ys.push(y.reshape((1, shape.hidden))?);
            }
            x = self.finish_block(block, &x, &Tensor::cat(&ys, 0)?)?;
        }
        self.output.forward(&self.norm.forward(&x)?)?.to_dtype(DType::F32)
    }

    /// Queries, keys and values of the rows of `x` (one token each, at `positions`),
    /// rotated: `(rows, heads, dim)` and twice `(rows, kv_heads, dim)`.
    fn projections(
        &self,
        shape: &Shape,
        block: &Block,
        x: &Tensor,
        positions: &[u32],
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let rows = positions.len();
        let h = block.attention_norm.forward(x)?;
        let q = block.q.forward(&h)?.reshape((rows, shape.heads, shape.head_dim))?;
        let k = block.k.forward(&h)?.reshape((rows, shape.kv_heads, shape.head_dim))?;
        let v = block.v.forward(&h)?.reshape((rows, shape.kv_heads, shape.head_dim))?;
        // Each row at its own position: the rows are rope's time axis, with the rows'
        // angles gathered.
        let at = Tensor::new(positions, &self.device)?;
        let (cos, sin) = (self.cos.index_select(&at, 0)?, self.sin.index_select(&at, 0)?);
        let rotate = |t: Tensor| -> Result<Tensor> {
            let t = t.transpose(0, 1)?.unsqueeze(0)?.contiguous()?;
            candle_nn::rotary_emb::rope_i(&t, &cos, &sin)?.squeeze(0)?.transpose(0, 1)
        };
        Ok((rotate(q)?, rotate(k)?, v))
    }

    /// The rest of a block once attention's heads `y` `(rows, hidden)` are known.
    fn finish_block(&self, block: &Block, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let x = (x + block.out.forward(y)?)?;
        let h = block.ffn_norm.forward(&x)?;
        let gated = (candle_nn::ops::silu(&block.gate.forward(&h)?)? * block.up.forward(&h)?)?;
        x + block.down.forward(&gated)?
    }
}

/// Attention of one sequence's new queries `(heads, n, dim)` over its past and its new
/// keys and values `(kv_heads, n, dim)`, which join the past. `(heads, n, dim)`.
fn attend(
    shape: &Shape,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    past: &mut KvCache,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let n = q.dim(1)?;
    let (k, v) = past.append(&half(k)?, &half(v)?)?;
    let (k, v) = (k.to_dtype(DType::F32)?, v.to_dtype(DType::F32)?);
    let seen = k.dim(1)?;
    // The query heads sharing a key/value head side by side: (kv_heads, group * n, dim).
    let q = rounded(&q.contiguous()?)?.reshape((shape.kv_heads, shape.group() * n, shape.head_dim))?;
    let scores = (q.matmul(&k.t()?)? * (1. / (shape.head_dim as f64).sqrt()))?;
    let scores = match mask {
        Some(mask) => scores
            .reshape((shape.kv_heads, shape.group(), n, seen))?
            .broadcast_add(mask)?
            .reshape((shape.kv_heads, shape.group() * n, seen))?,
        None => scores,
    };
    let weights = rounded(&candle_nn::ops::softmax_last_dim(&scores)?)?;
    weights.matmul(&v.contiguous()?)?.reshape((shape.heads, n, shape.head_dim))
}

/// Keys and values are kept in f16, as llama.cpp keeps them: half the memory, and the
/// same rounding as the reference.
fn half(t: &Tensor) -> Result<Tensor> {
    t.to_dtype(DType::F16)
}

/// `t` rounded to f16 and back: llama.cpp multiplies queries and attention weights with
/// its f16 keys and values in f16.
fn rounded(t: &Tensor) -> Result<Tensor> {
    t.to_dtype(DType::F16)?.to_dtype(DType::F32)
}

/// rope's angles for every position of the context: `(context, head_dim / 2)` twice.
fn rotations(shape: &Shape, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = shape.head_dim / 2;
    let inverse: Vec<f32> =
        (0..half).map(|i| 1. / shape.rope_base.powf(2. * i as f32 / shape.head_dim as f32)).collect();
    let inverse = Tensor::from_vec(inverse, (1, half), device)?;
    let positions =
        Tensor::arange(0, shape.context as u32, device)?.to_dtype(DType::F32)?.reshape((shape.context, 1))?;
    let angles = positions.matmul(&inverse)?;
    Ok((angles.cos()?, angles.sin()?))
}

/// `(n, start + n)`: 0 where the query at `start + i` may see the key, -inf past it.
fn causal_mask(n: usize, start: usize, device: &Device) -> Result<Tensor> {
    let seen = start + n;
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| (0..seen).map(move |j| if j > start + i { f32::NEG_INFINITY } else { 0. }))
        .collect();
    Tensor::from_vec(mask, (n, seen), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mask_lets_each_query_see_its_past_and_itself() {
        let mask = causal_mask(2, 3, &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        let inf = f32::NEG_INFINITY;
        assert_eq!(mask, vec![vec![0., 0., 0., 0., inf], vec![0., 0., 0., 0., 0.]]);
    }
}
