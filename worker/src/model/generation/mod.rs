//! Text generation from GGUF models, as llama.cpp runs them. So far its first piece: the
//! model's own tokenizer, built from the file's metadata ([`tokenizer`]), checked against
//! llama.cpp's token ids.

pub mod tokenizer;
