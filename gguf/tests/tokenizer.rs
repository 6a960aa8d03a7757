//! SmolLM2-135M-Instruct's tokenizer, built from its GGUF file's metadata, against
//! llama.cpp's token ids on over 500 strings (English, Chinese, emoji, code, runs of
//! whitespace, the chat template's special tokens). The ids are llama.cpp's, through
//! llama-cpp-python built from source (`make reference-llama` writes the fixture).

use std::path::PathBuf;

use candle_core::quantized::gguf_file;
use inferpush_gguf::tokenizer::{GgufTokenizer, from_gguf};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    llama_cpp_python: String,
    strings: Vec<String>,
    ids: Vec<Vec<u32>>,
}

fn tokenizer() -> GgufTokenizer {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut file = std::fs::File::open(&path)
        .unwrap_or_else(|e| panic!("{} (make test fetches it): {e}", path.display()));
    let content = gguf_file::Content::read(&mut file).unwrap();
    from_gguf(&content).unwrap()
}

#[test]
fn the_gguf_tokenizer_gives_llama_cpps_ids() {
    let fixture: Fixture = serde_json::from_str(include_str!("fixtures/smollm2-tokens.json")).unwrap();
    assert!(fixture.strings.len() >= 500, "{} strings", fixture.strings.len());
    let tokenizer = tokenizer();
    let mut differ = Vec::new();
    for (text, want) in fixture.strings.iter().zip(&fixture.ids) {
        let got = tokenizer.encode(text).unwrap();
        if &got != want {
            differ.push(format!("{text:?}: ours {got:?}, llama.cpp {want:?}"));
        }
    }
    println!(
        "{} of {} strings tokenized as llama.cpp ({}) does",
        fixture.strings.len() - differ.len(),
        fixture.strings.len(),
        fixture.llama_cpp_python
    );
    assert!(differ.is_empty(), "{} strings differ:\n{}", differ.len(), differ.join("\n"));
}

#[test]
fn special_tokens_are_single_ids_and_text_decodes_back() {
    let tokenizer = tokenizer();
    let ids = tokenizer.encode("<|im_start|>user\nnaïve café ☕ 123<|im_end|>").unwrap();
    assert_eq!(ids[0], 1, "<|im_start|> is one token");
    assert_eq!(*ids.last().unwrap(), 2, "<|im_end|> is one token, the end of sequence");
    assert_eq!(tokenizer.eos, 2);
    assert_eq!(tokenizer.bos, None, "SmolLM2 adds no BOS");
    assert_eq!(tokenizer.decode(&ids).unwrap(), "<|im_start|>user\nnaïve café ☕ 123<|im_end|>");
}

#[test]
fn the_chat_template_writes_smollm2s_prompt() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let text = inferpush_gguf::ModelText::read(&path).unwrap();
    assert_eq!(text.context_length, 8192);
    let message =
        |role: &str, content: &str| inferpush_gguf::Message { role: role.into(), content: content.into() };
    let prompt = text.chat_prompt(&[message("user", "Hi")]).unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let own_system = text.chat_prompt(&[message("system", "Be brief."), message("user", "Hi")]).unwrap();
    assert!(own_system.starts_with("<|im_start|>system\nBe brief.<|im_end|>\n"), "{own_system}");
}
