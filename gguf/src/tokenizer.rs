//! A tokenizer built from a GGUF file's own metadata (`tokenizer.ggml.*`), tokenizing as
//! llama.cpp does: byte-level BPE (`tokenizer.ggml.model = "gpt2"`) over the file's
//! vocabulary and merges, the pre-tokenizer `tokenizer.ggml.pre` names, and the control
//! and user-defined tokens (the chat template's `<|im_start|>`…) matched as themselves.

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

/// llama.cpp's token types that are matched as whole tokens in text: control tokens and
/// user-defined ones.
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// A GGUF model's tokenizer and its special ids.
#[derive(Clone)]
pub struct GgufTokenizer {
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// Beginning of sequence, when the model adds one.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: u32,
}

fn metadata<'a>(content: &'a Content, key: &str) -> anyhow::Result<&'a Value> {
    content.metadata.get(key).ok_or_else(|| anyhow::anyhow!("the GGUF file has no `{key}`"))
}

fn strings(content: &Content, key: &str) -> anyhow::Result<Vec<String>> {
    metadata(content, key)?
        .to_vec()?
        .iter()
        .map(|value| value.to_string().cloned().map_err(anyhow::Error::from))
        .collect()
}

/// The pre-tokenizer llama.cpp uses for `pre` (`tokenizer.ggml.pre`).
fn pre_tokenizer(pre: &str) -> anyhow::Result<PreTokenizerWrapper> {
    let byte_level = ByteLevel::default().add_prefix_space(false).use_regex(true);
    Ok(match pre {
        // Each digit alone, then GPT-2's split (llama.cpp's `smollm`, `starcoder`, …).
        "smollm" | "starcoder" | "refact" | "codeshell" => {
            Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
        }
        "gpt-2" | "gpt2" | "default" => byte_level.into(),
        other => anyhow::bail!(
            "tokenizer.ggml.pre `{other}` is not one this worker knows (smollm, starcoder, refact, codeshell, gpt-2)"
        ),
    })
}

/// The tokenizer `content`'s metadata describes.
pub fn from_gguf(content: &Content) -> anyhow::Result<GgufTokenizer> {
    let model = metadata(content, "tokenizer.ggml.model")?.to_string()?;
    anyhow::ensure!(
        model == "gpt2",
        "tokenizer.ggml.model `{model}`: only byte-level BPE (`gpt2`) is served"
    );
    let pre = match content.metadata.get("tokenizer.ggml.pre") {
        Some(value) => value.to_string()?.clone(),
        None => "default".to_owned(),
    };
    let tokens = strings(content, "tokenizer.ggml.tokens")?;
    let merges = strings(content, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|merge| {
            merge
                .split_once(' ')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| anyhow::anyhow!("merge `{merge}` is not two tokens"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let types: Vec<i32> = match content.metadata.get("tokenizer.ggml.token_type") {
        Some(value) => value.to_vec()?.iter().map(|t| t.to_i32()).collect::<Result<_, _>>()?,
        None => vec![1; tokens.len()],
    };
    let vocab: Vocab = tokens.iter().enumerate().map(|(id, token)| (token.clone(), id as u32)).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| anyhow::anyhow!("building the BPE model: {e}"))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer(&pre)?));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    let specials: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, kind)| matches!(**kind, CONTROL | USER_DEFINED))
        .map(|(token, _)| AddedToken::from(token.clone(), true))
        .collect();
    tokenizer.add_special_tokens(&specials);
    let id = |key: &str| content.metadata.get(key).map(|v| v.to_u32()).transpose();
    let add_bos = match content.metadata.get("tokenizer.ggml.add_bos_token") {
        Some(value) => value.to_bool()?,
        None => false,
    };
    let eos = id("tokenizer.ggml.eos_token_id")?
        .ok_or_else(|| anyhow::anyhow!("the GGUF file has no eos token"))?;
    let bos = if add_bos { id("tokenizer.ggml.bos_token_id")? } else { None };
    Ok(GgufTokenizer { tokenizer, bos, eos })
}

impl GgufTokenizer {
    /// The ids of `text`, special tokens matched, as llama.cpp's `tokenize(text, add_special,
    /// parse_special = true)`.
    pub fn encode(&self, text: &str) -> anyhow::Result<Vec<u32>> {
        let encoding = self.tokenizer.encode(text, false).map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
        Ok(self.bos.into_iter().chain(encoding.get_ids().iter().copied()).collect())
    }

    /// The text of `ids` (special tokens included).
    pub fn decode(&self, ids: &[u32]) -> anyhow::Result<String> {
        self.tokenizer.decode(ids, false).map_err(|e| anyhow::anyhow!("decoding: {e}"))
    }
}
