//! The documentation's examples, as `tests/examples.rs` runs them: every fenced shell,
//! JavaScript and Python block of the README and the book (`docs/src`), with the addresses
//! they document (`127.0.0.1:8080`, Soketi's `6001`, `app-key`, `target/release/inferpush`)
//! pointed at a test stack.
//!
//! A block's info string says how it runs:
//! - ```` ```sh ````, ```` ```bash ````, ```` ```python ````: runs to its end, and must
//!   succeed; a comment line that shows an HTTP status line (`# HTTP/1.1 202 Accepted`) must
//!   be in its output;
//! - ```` ```js ````: a client that waits for events: it runs while the test submits an echo
//!   task as `dev-alice`, and must print that task's id;
//! - ```` ```sh,stream ````: the same for a shell command that follows a stream (`curl -N`);
//! - `,norun` after the language: not run, as its text says why (it starts the platform,
//!   edits the repository, or belongs in another app). Any other language is not code.

use std::path::{Path, PathBuf};

/// How a block runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// To its end: it must succeed.
    ToEnd,
    /// While a task is submitted: it must print the task's id.
    Listens,
    /// Not run (`norun`).
    NotRun,
}

/// One fenced block.
#[derive(Debug, Clone)]
pub struct Example {
    /// `file:line` of its opening fence.
    pub place: String,
    /// `sh`, `bash`, `js` or `python`.
    pub language: String,
    /// How it runs.
    pub mode: Mode,
    /// Its text.
    pub code: String,
}

impl Example {
    /// The status lines its comments show as output (`# HTTP/1.1 202 Accepted`).
    pub fn shown_status_lines(&self) -> Vec<String> {
        self.code
            .lines()
            .filter_map(|line| line.trim_start().strip_prefix("# HTTP/"))
            .map(|rest| format!("HTTP/{}", rest.trim_end()))
            .collect()
    }
}

const RUNNABLE: [&str; 4] = ["sh", "bash", "js", "python"];

/// The Markdown files whose examples run: the README and every page of the book.
pub fn documents(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md")];
    let mut stack = vec![root.join("docs/src")];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).expect("docs/src is readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The runnable-language blocks of `text` (from `name`).
pub fn extract(name: &str, text: &str) -> Vec<Example> {
    let mut examples = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((number, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else { continue };
        let mut attributes = info.trim().split(',').map(str::trim);
        let language = attributes.next().unwrap_or_default().to_owned();
        let attributes: Vec<&str> = attributes.collect();
        let mut code = String::new();
        for (_, line) in lines.by_ref() {
            if line.starts_with("```") {
                break;
            }
            code.push_str(line);
            code.push('\n');
        }
        if !RUNNABLE.contains(&language.as_str()) {
            continue;
        }
        let mode = if attributes.contains(&"norun") {
            Mode::NotRun
        } else if language == "js" || attributes.contains(&"stream") {
            Mode::Listens
        } else {
            Mode::ToEnd
        };
        examples.push(Example { place: format!("{name}:{}", number + 1), language, mode, code });
    }
    examples
}

/// Where a documented address points in a test stack.
pub struct Addresses {
    /// The api's base URL, e.g. `http://127.0.0.1:40123`.
    pub api_url: String,
    /// The push server's port.
    pub push_port: u16,
    /// Its app key.
    pub app_key: String,
    /// The `inferpush` command line's path.
    pub cli: String,
}

/// `code` with the documented defaults replaced by `to`'s.
pub fn point_at(code: &str, to: &Addresses) -> String {
    let api = to.api_url.trim_start_matches("http://");
    let mut code = code
        .replace("http://127.0.0.1:8080", &to.api_url)
        .replace("localhost:8080", api)
        .replace("127.0.0.1:6001", &format!("127.0.0.1:{}", to.push_port))
        .replace("wsPort: 6001", &format!("wsPort: {}", to.push_port))
        .replace("'app-key'", &format!("'{}'", to.app_key))
        .replace("target/release/inferpush", &to.cli);
    // A command line that starts with the bare `inferpush`.
    code = code
        .lines()
        .map(|line| match line.strip_prefix("inferpush ") {
            Some(rest) => format!("{} {rest}", to.cli),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    code + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_found_with_how_they_run() {
        let text = "a\n```sh\ncurl -i x\n# HTTP/1.1 202 Accepted\n```\n```js\nnew Pusher('app-key')\n```\n\
                    ```sh,norun\nmake run\n```\n```text\nno\n```\n```sh,stream\ncurl -N x\n```\n";
        let found = extract("doc.md", text);
        let modes: Vec<Mode> = found.iter().map(|e| e.mode).collect();
        assert_eq!(modes, [Mode::ToEnd, Mode::Listens, Mode::NotRun, Mode::Listens]);
        assert_eq!(found[0].place, "doc.md:2");
        assert_eq!(found[0].shown_status_lines(), ["HTTP/1.1 202 Accepted"]);
        let to = Addresses {
            api_url: "http://127.0.0.1:1".into(),
            push_port: 2,
            app_key: "k".into(),
            cli: "/c".into(),
        };
        assert_eq!(
            point_at(
                "curl http://127.0.0.1:8080/x localhost:8080\ninferpush --token t\n{ wsPort: 6001 } 'app-key'",
                &to
            ),
            "curl http://127.0.0.1:1/x 127.0.0.1:1\n/c --token t\n{ wsPort: 2 } 'k'\n"
        );
    }
}
