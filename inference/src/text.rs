//! Turning generated tokens into streamed text: decoding incrementally
//! (a token can end in the middle of a UTF-8 character) and holding back
//! text that may be the start of a stop sequence, so a stop sequence is
//! never streamed to the client and then taken back.

use tokenizers::Tokenizer;

use crate::EngineError;

/// Decodes a growing list of tokens into text pieces.
pub(crate) struct Detokenizer<'a> {
    tokenizer: &'a Tokenizer,
    ids: Vec<u32>,
    /// Tokens before this are decoded and emitted; decoding restarts a few
    /// tokens back so byte-level merges across the boundary decode right.
    prefix: usize,
    /// Tokens before this have been emitted.
    read: usize,
}

impl<'a> Detokenizer<'a> {
    pub(crate) fn new(tokenizer: &'a Tokenizer) -> Self {
        Self {
            tokenizer,
            ids: Vec::new(),
            prefix: 0,
            read: 0,
        }
    }

    fn decode(&self, ids: &[u32]) -> Result<String, EngineError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| EngineError::Failed(format!("cannot decode tokens: {e}")))
    }

    /// Adds `id`, returning the text it completes (empty while a character
    /// is still incomplete).
    pub(crate) fn push(&mut self, id: u32) -> Result<String, EngineError> {
        self.ids.push(id);
        let window = self.ids.get(self.prefix..self.read).unwrap_or_default();
        let before = self.decode(window)?;
        let now = self.decode(self.ids.get(self.prefix..).unwrap_or_default())?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') {
            let piece = now.get(before.len()..).unwrap_or_default().to_owned();
            self.prefix = self.read;
            self.read = self.ids.len();
            Ok(piece)
        } else {
            Ok(String::new())
        }
    }
}

/// Cuts the answer at the first stop sequence and releases only text that
/// cannot turn out to be part of one.
pub(crate) struct StopMatcher<'a> {
    stop: &'a [String],
    /// Everything generated so far (up to a stop sequence).
    text: String,
    /// Bytes of `text` already released.
    released: usize,
}

/// What a new piece of text amounts to.
pub(crate) enum Matched {
    /// Text safe to release now (possibly empty).
    Release(String),
    /// A stop sequence was reached: release this, then stop.
    Stop(String),
}

impl<'a> StopMatcher<'a> {
    pub(crate) fn new(stop: &'a [String]) -> Self {
        Self {
            stop,
            text: String::new(),
            released: 0,
        }
    }

    pub(crate) fn push(&mut self, piece: &str) -> Matched {
        let mut search_from = self
            .released
            .saturating_sub(self.stop.iter().map(String::len).max().unwrap_or(0));
        while !self.text.is_char_boundary(search_from) {
            search_from -= 1;
        }
        self.text.push_str(piece);
        let found = self
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| {
                self.text
                    .get(search_from..)
                    .and_then(|t| t.find(s.as_str()))
                    .map(|i| i + search_from)
            })
            .min();
        if let Some(at) = found {
            self.text.truncate(at);
            return Matched::Stop(self.release_to(at));
        }
        // Hold back the longest tail that begins some stop sequence.
        let hold = self
            .stop
            .iter()
            .map(|s| longest_prefix_tail(&self.text, s))
            .max()
            .unwrap_or(0);
        Matched::Release(self.release_to(self.text.len() - hold))
    }

    /// What is still held back, released when generation ends otherwise.
    pub(crate) fn finish(&mut self) -> String {
        self.release_to(self.text.len())
    }

    /// Releases the text up to byte `end` not released yet (none if `end`
    /// is not past what was).
    fn release_to(&mut self, end: usize) -> String {
        let out = self
            .text
            .get(self.released..end)
            .unwrap_or_default()
            .to_owned();
        self.released = self.released.max(end);
        out
    }

    /// The answer so far.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`,
/// on character boundaries.
fn longest_prefix_tail(text: &str, stop: &str) -> usize {
    let most = stop.len().saturating_sub(1).min(text.len());
    (1..=most)
        .rev()
        .find(|&n| {
            let start = text.len() - n;
            text.is_char_boundary(start)
                && stop.is_char_boundary(n)
                && text.get(start..).is_some_and(|t| stop.starts_with(t))
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stop: &[String], pieces: &[&str]) -> (Vec<String>, bool, String) {
        let mut m = StopMatcher::new(stop);
        let mut out = Vec::new();
        for p in pieces {
            match m.push(p) {
                Matched::Release(t) => out.push(t),
                Matched::Stop(t) => {
                    out.push(t);
                    return (out, true, m.text().to_owned());
                }
            }
        }
        out.push(m.finish());
        (out, false, m.text().to_owned())
    }

    #[test]
    fn a_stop_sequence_split_across_pieces_is_never_released() {
        let stop = vec!["\n\nUser:".to_owned()];
        let (out, stopped, text) = run(&stop, &["Answer.", "\n", "\nUs", "er: more"]);
        assert!(stopped);
        assert_eq!(text, "Answer.");
        assert_eq!(out.concat(), "Answer.");
        assert!(out.iter().all(|p| !p.contains('\n')));
    }

    #[test]
    fn a_false_start_is_released_later() {
        let stop = vec!["END".to_owned()];
        let (out, stopped, text) = run(&stop, &["the EN", "D", "!"]);
        assert!(stopped);
        assert_eq!(text, "the ");
        let (out2, stopped2, text2) = run(&stop, &["the EN", "igma", " E"]);
        assert!(!stopped2);
        assert_eq!(text2, "the ENigma E");
        assert_eq!(out2.concat(), "the ENigma E");
        assert_eq!(out.concat(), "the ");
    }

    #[test]
    fn no_stop_sequences_release_everything_at_once() {
        let (out, stopped, _) = run(&[], &["a", "ß", "c"]);
        assert!(!stopped);
        assert_eq!(out, vec!["a", "ß", "c", ""]);
    }

    #[test]
    fn a_stop_sequence_after_multibyte_text_is_found() {
        let stop = vec!["\u{FFFD}=H".to_owned()];
        let (out, stopped, text) = run(&stop, &["jP", "\u{FFFD}\u{FFFD}", "\u{FFFD}=", "H!"]);
        assert!(stopped);
        assert_eq!(text, "jP\u{FFFD}\u{FFFD}");
        assert_eq!(out.concat(), text);
    }

    #[test]
    fn multibyte_holdback_stays_on_boundaries() {
        let stop = vec!["éx".to_owned()];
        let (out, stopped, text) = run(&stop, &["caf", "é", "!"]);
        assert!(!stopped);
        assert_eq!(text, "café!");
        assert_eq!(out.concat(), "café!");
    }
}
