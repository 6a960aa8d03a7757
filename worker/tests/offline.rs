//! `inferpush-worker generate` as the GPU check runs it (`scripts/gpu-check.sh`), on the CPU:
//! SmolLM2's header filled with random weights (`scripts/random_gguf.py`), the network a GPU
//! runs (candle's tensors) teacher-forced on the CPU network's greedy tokens, then decode
//! speed for one and two streams.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python(args: &[&Path]) {
    let status = Command::new("python3")
        .arg(root().join("scripts/random_gguf.py"))
        .args(args)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "random_gguf.py {args:?}");
}

#[test]
fn generate_compares_the_gpu_network_with_the_cpu_network_on_random_weights() {
    let scratch = tempfile::tempdir().unwrap();
    let real = root().join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(real.exists(), "{} (make test fetches it)", real.display());
    let header = scratch.path().join("header.gguf");
    python(&[Path::new("header"), &real, &header]);
    assert!(std::fs::metadata(&header).unwrap().len() < 4 << 20, "the header travels: a few MB");
    let dir = scratch.path().join("models/smollm2-135m-instruct");
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("model.gguf");
    python(&[Path::new("fill"), &header, &model]);
    assert_eq!(
        std::fs::metadata(&model).unwrap().len(),
        std::fs::metadata(&real).unwrap().len(),
        "random weights of the real tensors' types and sizes"
    );
    let sha = hex::encode(Sha256::digest(std::fs::read(&model).unwrap()));
    std::fs::write(
        dir.join("model.toml"),
        format!(
            "name = \"smollm2-135m-instruct\"\nkind = \"text-generation\"\nversion = \"test\"\n\
             [[files]]\npath = \"model.gguf\"\nsha256 = \"{sha}\"\n\
             [text_generation]\ngguf = \"model.gguf\"\ncontext_length = 2048\nmax_tokens = 64\n\
             max_concurrent_sequences = 2\n"
        ),
    )
    .unwrap();
    let prompts = scratch.path().join("prompts.json");
    std::fs::write(&prompts, r#"["What is the capital of France?", "Write a haiku about the sea.", "2+2="]"#)
        .unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_inferpush-worker"))
        .arg("--model-repository")
        .arg(scratch.path().join("models"))
        .args(["--device", "cpu", "generate", "--model", "smollm2-135m-instruct", "--prompts"])
        .arg(&prompts)
        .args(["--compare-tokens", "16", "--streams", "1,2", "--measure-tokens", "8"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> = stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    println!("{stdout}");

    let agreement = &lines[0];
    assert_eq!(agreement["case"], "agreement");
    assert_eq!(agreement["positions"], 48);
    // The same weights through candle's tensors and through llama.cpp's CPU arithmetic:
    // near, not equal (other sums, another exponential, f32 keys and values). Random weights
    // give flat logits whose top two are often close: 46 of 48 here.
    let share = agreement["top1_agreement"].as_f64().unwrap();
    assert!(share >= 0.9, "the networks agree at only {share} of positions");
    assert!(agreement["max_logit_diff"].as_f64().unwrap() < 1.0, "{agreement}");
    for (line, streams) in lines[1..].iter().zip([1, 2]) {
        assert_eq!(line["case"], "decode");
        assert_eq!(line["streams"], streams);
        assert!(line["tokens_per_second"].as_f64().unwrap() > 0., "{line}");
    }
    assert_eq!(lines.len(), 3);
}
