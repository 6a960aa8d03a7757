//! Whole repositories on disk: what is read, and what refuses the repository, naming the
//! file, the field and the rule.

use std::path::Path;

use inferpush_repository::{CARD_FILE, FileCheck, Kind, Repository};

fn card(root: &Path, folder: &str, text: &str) {
    std::fs::create_dir_all(root.join(folder)).unwrap();
    std::fs::write(root.join(folder).join(CARD_FILE), text).unwrap();
}

const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

fn embedding(name: &str, alias: &str) -> String {
    format!(
        r#"
name = "{name}"
kind = "text-embedding"
version = "2"
aliases = ["{alias}"]

[[files]]
path = "tokenizer.json"
sha256 = "{HELLO_SHA256}"

[text_embedding]
tokenizer = "tokenizer.json"
onnx = "tokenizer.json"
pooling = "cls"
normalize = false
dimensions = 8
"#
    )
}

#[test]
fn cards_are_read_in_order_and_folders_without_one_are_passed_over() {
    let root = tempfile::tempdir().unwrap();
    card(root.path(), "b-echo", "name = \"echo\"\nkind = \"echo\"\nversion = \"1\"\n");
    card(root.path(), "a-embed", &embedding("tiny", "org/Tiny"));
    std::fs::write(root.path().join("a-embed/tokenizer.json"), "hello").unwrap();
    std::fs::create_dir_all(root.path().join("onnxruntime")).unwrap();
    let repository = Repository::load(root.path(), FileCheck::Checksums).unwrap();
    assert_eq!(repository.names(), ["tiny", "echo"]);
    assert_eq!(repository.find("ORG/tiny").unwrap().card.kind, Kind::TextEmbedding);
    assert!(repository.get("org/Tiny").is_none(), "aliases are for `find`");
    assert_eq!(
        repository.get("tiny").unwrap().file("tokenizer.json"),
        root.path().join("a-embed/tokenizer.json")
    );
}

#[test]
fn a_missing_file_or_a_wrong_checksum_refuses_the_repository() {
    let root = tempfile::tempdir().unwrap();
    card(root.path(), "tiny", &embedding("tiny", "org/tiny"));
    let missing = Repository::load(root.path(), FileCheck::Exists).unwrap_err();
    assert_eq!(missing.field.as_deref(), Some("files[0]"));
    assert!(missing.to_string().contains("tiny/model.toml") && missing.rule.contains("missing"), "{missing}");
    assert!(Repository::load(root.path(), FileCheck::None).is_ok(), "the api does not look at files");

    std::fs::write(root.path().join("tiny/tokenizer.json"), "hello!").unwrap();
    assert!(Repository::load(root.path(), FileCheck::Exists).is_ok());
    let wrong = Repository::load(root.path(), FileCheck::Checksums).unwrap_err();
    assert_eq!(wrong.field.as_deref(), Some("files[0].sha256"));
    assert!(wrong.rule.contains(HELLO_SHA256), "{wrong}");
}

#[test]
fn two_cards_with_one_name_or_alias_refuse_the_repository() {
    let root = tempfile::tempdir().unwrap();
    card(root.path(), "one", &embedding("tiny", "org/tiny"));
    card(root.path(), "two", &embedding("small", "ORG/TINY"));
    let clash = Repository::load(root.path(), FileCheck::None).unwrap_err();
    assert!(clash.file.ends_with("two/model.toml"), "{clash}");
    assert_eq!(clash.field.as_deref(), Some("aliases[0]"));
    assert!(clash.rule.contains("already a name or alias of `tiny`"), "{clash}");
}

#[test]
fn a_bad_card_names_its_file_and_field() {
    let root = tempfile::tempdir().unwrap();
    card(root.path(), "odd", "name = \"odd\"\nkind = \"magic\"\nversion = \"1\"\n");
    let error = Repository::load(root.path(), FileCheck::None).unwrap_err().to_string();
    assert!(error.contains("odd/model.toml: `kind`: unknown kind `magic`"), "{error}");
    assert!(error.contains("echo, text-embedding, tensor"), "{error}");
}

/// The cards the project ships read as they are (with their files, once fetched).
#[test]
fn the_shipped_cards_are_valid() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let repository = Repository::load(&shipped, FileCheck::None).unwrap();
    for name in ["echo", "all-minilm-l6-v2"] {
        assert!(repository.get(name).is_some(), "{name} is shipped");
    }
    let embedding = repository.find("sentence-transformers/all-MiniLM-L6-v2").unwrap();
    assert_eq!(embedding.card.name, "all-minilm-l6-v2");
    // Once `make models` fetched them (as `make test` does first), the files are the cards'.
    if embedding.file("tokenizer.json").exists() {
        Repository::load(&shipped, FileCheck::Checksums).expect("the fetched files match their cards");
    }
}
