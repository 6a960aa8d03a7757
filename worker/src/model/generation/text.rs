//! The text of a sequence's tokens as it grows: released only once final (never half a
//! UTF-8 character, never the start of what may turn out to be a stop string), and cut at
//! the first stop string.

use inferpush_gguf::GgufTokenizer;

/// What one more token did to the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grew {
    /// Text now final (possibly empty: held back for now).
    Text(String),
    /// A stop string appeared: the text before it, not yet released, and the end.
    Stopped(String),
}

/// One sequence's generated tokens and how much of their text has been released.
pub struct TextStream {
    tokens: Vec<u32>,
    stops: Vec<String>,
    released: usize,
}

impl TextStream {
    /// A stream that ends at the first of `stops` (empty ones are ignored).
    pub fn new(stops: Vec<String>) -> Self {
        Self { tokens: Vec::new(), stops: stops.into_iter().filter(|s| !s.is_empty()).collect(), released: 0 }
    }

    /// Tokens generated.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Adds `token`, returning what became final.
    pub fn push(&mut self, tokenizer: &GgufTokenizer, token: u32) -> anyhow::Result<Grew> {
        self.tokens.push(token);
        let text = tokenizer.decode(&self.tokens)?;
        // A stop string may begin in text already released (its start held back).
        let from = floor_boundary(&text, self.released.saturating_sub(self.longest_stop()));
        if let Some(at) = self.stops.iter().filter_map(|stop| text[from..].find(stop.as_str())).min() {
            let end = from + at;
            let piece = text[self.released.min(end)..end].to_owned();
            self.released = end;
            return Ok(Grew::Stopped(piece));
        }
        // Half a character decodes as U+FFFD at the end: wait for its other bytes.
        let complete = text.trim_end_matches('\u{FFFD}');
        let held = self.held_back(complete);
        let end = complete.len() - held;
        if end <= self.released {
            return Ok(Grew::Text(String::new()));
        }
        let piece = complete[self.released..end].to_owned();
        self.released = end;
        Ok(Grew::Text(piece))
    }

    /// Everything not yet released (at the end of a sequence that did not stop on a stop
    /// string, what was held back is text after all).
    pub fn rest(&mut self, tokenizer: &GgufTokenizer) -> anyhow::Result<String> {
        let text = tokenizer.decode(&self.tokens)?;
        let rest = text.get(self.released..).unwrap_or_default().to_owned();
        self.released = text.len();
        Ok(rest)
    }

    fn longest_stop(&self) -> usize {
        self.stops.iter().map(String::len).max().unwrap_or(0)
    }

    /// Bytes at the end of `text` that begin some stop string.
    fn held_back(&self, text: &str) -> usize {
        self.stops
            .iter()
            .flat_map(|stop| {
                (1..stop.len()).rev().filter(|&n| stop.is_char_boundary(n) && text.ends_with(&stop[..n]))
            })
            .max()
            .unwrap_or(0)
    }
}

fn floor_boundary(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}
