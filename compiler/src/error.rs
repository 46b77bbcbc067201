//! Errors a user sees when a statement or rule does not compile.
//!
//! Every error carries a plain lowercase reason and, where the input has one, the 1-based line
//! and column it refers to, so the REST layer can answer 400 with "what and where".

use std::fmt;

/// A position in the SQL text: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, starting at 1.
    pub line: u64,
    /// Column, starting at 1.
    pub column: u64,
}

impl Pos {
    /// Builds a position from a sqlparser location; `None` for sqlparser's "no location" (line 0).
    pub fn from_location(loc: sqlparser::tokenizer::Location) -> Option<Pos> {
        (loc.line > 0).then_some(Pos {
            line: loc.line,
            column: loc.column,
        })
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A compile error: a reason, an optional position, and an optional hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// What is wrong, lowercase, no trailing period.
    pub reason: String,
    /// Where in the SQL text, if known.
    pub pos: Option<Pos>,
    /// A suggestion such as `did you mean "temperature"?`.
    pub hint: Option<String>,
}

impl CompileError {
    /// An error without a position.
    pub fn new(reason: impl Into<String>) -> Self {
        CompileError {
            reason: reason.into(),
            pos: None,
            hint: None,
        }
    }

    /// An error at a position (if known).
    pub fn at(reason: impl Into<String>, pos: Option<Pos>) -> Self {
        CompileError {
            reason: reason.into(),
            pos,
            hint: None,
        }
    }

    /// Adds a hint shown after the reason.
    pub fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// Sets the position if none is set yet.
    pub fn or_at(mut self, pos: Option<Pos>) -> Self {
        if self.pos.is_none() {
            self.pos = pos;
        }
        self
    }

    /// Turns a sqlparser error ("Expected: x, found: y at Line: 1, Column: 8") into ours.
    pub fn from_parser(err: sqlparser::parser::ParserError) -> Self {
        let text = match err {
            sqlparser::parser::ParserError::TokenizerError(s)
            | sqlparser::parser::ParserError::ParserError(s) => s,
            sqlparser::parser::ParserError::RecursionLimitExceeded => {
                return CompileError::new(format!(
                    "expression nesting is above the limit of {} levels",
                    crate::limits::MAX_EXPR_DEPTH
                ));
            }
        };
        let (reason, pos) = split_location(&text);
        CompileError::at(format!("syntax error: {}", lower_first(reason)), pos)
    }
}

/// Splits sqlparser's trailing " at Line: L, Column: C" off a message.
fn split_location(text: &str) -> (&str, Option<Pos>) {
    if let Some(idx) = text.rfind(" at Line: ") {
        let tail = &text[idx + " at Line: ".len()..];
        let mut parts = tail.split(", Column: ");
        let line = parts.next().and_then(|l| l.trim().parse().ok());
        let column = parts.next().and_then(|c| c.trim().parse().ok());
        if let (Some(line), Some(column)) = (line, column) {
            return (&text[..idx], Some(Pos { line, column }));
        }
    }
    (text, None)
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)?;
        if let Some(pos) = self.pos {
            write!(f, " at {pos}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CompileError {}

/// Shorthand for compiler results.
pub type Result<T, E = CompileError> = std::result::Result<T, E>;

/// Suggests the closest candidate to `name` (edit distance at most 2 or a third of its length).
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let lower = name.to_lowercase();
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!("did you mean \"{c}\"?"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let cands = ["temperature", "humidity", "device"];
        assert_eq!(
            did_you_mean("temprature", cands).as_deref(),
            Some("did you mean \"temperature\"?")
        );
        assert_eq!(did_you_mean("zzz", cands), None);
    }

    #[test]
    fn parser_locations_are_extracted() {
        let (reason, pos) =
            split_location("Expected: end of statement, found: x at Line: 2, Column: 7");
        assert_eq!(reason, "Expected: end of statement, found: x");
        assert_eq!(pos, Some(Pos { line: 2, column: 7 }));
    }
}
