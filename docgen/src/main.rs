//! `inferpush-docgen`: writes the book's generated reference pages (`make docs` runs it),
//! or with `--check` says which are stale and fails.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let check = std::env::args().any(|arg| arg == "--check");
    let folder = PathBuf::from(inferpush_docgen::FOLDER);
    std::fs::create_dir_all(&folder)?;
    let mut stale = Vec::new();
    for (name, text) in inferpush_docgen::pages() {
        let path = folder.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
            continue;
        }
        if check {
            stale.push(path.display().to_string());
        } else {
            std::fs::write(&path, text)?;
            println!("wrote {}", path.display());
        }
    }
    anyhow::ensure!(stale.is_empty(), "stale, run `make docs`: {}", stale.join(", "));
    Ok(())
}
