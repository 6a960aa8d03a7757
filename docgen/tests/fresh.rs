//! The committed reference pages are what the code generates now: a setting, metric or
//! route changed without `make docs` fails here, naming the page.

#[test]
fn every_generated_page_is_current() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (name, text) in inferpush_docgen::pages() {
        let path = root.join(inferpush_docgen::FOLDER).join(name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(committed == text, "{} is stale: run `make docs` and commit it", path.display());
    }
}
