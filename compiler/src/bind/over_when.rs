//! `OVER ([PARTITION BY ...] WHEN cond)`: eKuiper's condition clause that sqlparser cannot
//! parse. The text is masked before parsing and each condition handed back, by position, to
//! the analytic call or sliding window whose OVER it was written in.

use sqlparser::ast;
use sqlparser::parser::Parser;

use super::Binder;
use crate::dialect::EkuiperDialect;
use crate::error::{CompileError, Pos, Result};

/// sqlparser cannot parse eKuiper's `OVER ([PARTITION BY ...] WHEN cond)`: cut each `WHEN cond`
/// out of the text (replacing it with spaces, so every other position stays right; the rest,
/// `OVER (PARTITION BY k)` or `OVER ()`, parses) and parse the conditions on their own, padded
/// so their positions are right too. Returns each condition with the position of its `OVER`.
pub(crate) fn extract_over_whens(sql: &str) -> Result<(String, Vec<(Pos, ast::Expr)>)> {
    use sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&EkuiperDialect, sql)
        .tokenize_with_location()
        .map_err(|e| CompileError::at(e.message.clone(), Pos::from_location(e.location)))?;
    let significant: Vec<&sqlparser::tokenizer::TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let is_word =
        |t: &Token, w: &str| matches!(t, Token::Word(x) if x.value.eq_ignore_ascii_case(w));
    // Byte offsets of line starts, to turn token locations into offsets.
    let mut line_starts = vec![0usize];
    for (i, ch) in sql.char_indices() {
        if ch == '\n' {
            line_starts.push(i + 1);
        }
    }
    let offset = |loc: sqlparser::tokenizer::Location| -> usize {
        let start = line_starts
            .get((loc.line as usize).saturating_sub(1))
            .copied()
            .unwrap_or(sql.len());
        sql[start..]
            .char_indices()
            .nth((loc.column as usize).saturating_sub(1))
            .map_or(sql.len(), |(i, _)| start + i)
    };
    let blank = |s: &str| -> String {
        s.chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect()
    };
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut found = Vec::new();
    for (k, tok) in significant.iter().enumerate() {
        if !is_word(&tok.token, "over")
            || significant.get(k + 1).map(|t| &t.token) != Some(&Token::LParen)
        {
            continue;
        }
        // Inside the parentheses: the WHEN at depth 1 and the closing parenthesis.
        let mut depth = 0usize;
        let mut when = None;
        let mut close = None;
        for t in &significant[k + 1..] {
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(*t);
                        break;
                    }
                }
                _ if depth == 1 && when.is_none() && is_word(&t.token, "when") => when = Some(*t),
                _ => {}
            }
        }
        let (Some(when), Some(close)) = (when, close) else {
            if close.is_none() {
                return Err(CompileError::at(
                    "OVER ( is missing its closing parenthesis",
                    Pos::from_location(tok.span.start),
                ));
            }
            continue;
        };
        let when_at = offset(when.span.start);
        // An OVER inside an earlier OVER's condition would cut text already cut.
        if cuts.last().is_some_and(|&(_, end)| when_at < end) {
            return Err(CompileError::at(
                "an OVER (... WHEN ...) cannot be inside another OVER's WHEN condition",
                Pos::from_location(tok.span.start),
            ));
        }
        let cond_from = offset(when.span.end);
        let close_at = offset(close.span.start);
        let padded = format!("{}{}", blank(&sql[..cond_from]), &sql[cond_from..close_at]);
        let tokens = crate::dialect::ekuiper_tokens(&padded)
            .map_err(|e| CompileError::at(e.message.clone(), Pos::from_location(e.location)))?;
        let cond = Parser::new(&EkuiperDialect)
            .with_tokens_with_locations(tokens.tokens)
            .parse_expr()
            .map_err(CompileError::from_parser)?;
        let pos = Pos::from_location(tok.span.start).unwrap_or(Pos { line: 1, column: 1 });
        found.push((pos, cond));
        cuts.push((when_at, close_at));
    }
    let mut masked = String::with_capacity(sql.len());
    let mut at = 0;
    for (from, to) in cuts {
        masked.push_str(&sql[at..from]);
        masked.push_str(&blank(&sql[from..to]));
        at = to;
    }
    masked.push_str(&sql[at..]);
    Ok((masked, found))
}

impl Binder<'_> {
    /// The `WHEN` condition of the first OVER clause after `pos` (the function's name).
    pub(super) fn take_when(&mut self, pos: Option<Pos>) -> Option<(Pos, ast::Expr)> {
        let after = pos.map_or((0, 0), |p| (p.line, p.column));
        let i = self
            .whens
            .iter()
            .position(|(p, _)| (p.line, p.column) > after)?;
        Some(self.whens.remove(i))
    }
}

#[cfg(test)]
mod tests {
    use super::extract_over_whens;
    use crate::bind::testing::{error, explain};

    #[test]
    fn masking_keeps_every_position() {
        let sql = "SELECT lag(a) OVER (PARTITION BY k WHEN a > 1) FROM s";
        let (masked, whens) = extract_over_whens(sql).unwrap();
        assert_eq!(masked.len(), sql.len());
        let blanked = " ".repeat(" WHEN a > 1".len());
        assert_eq!(
            masked,
            format!("SELECT lag(a) OVER (PARTITION BY k{blanked}) FROM s")
        );
        assert_eq!(whens.len(), 1);
        assert_eq!(whens[0].0.to_string(), "1:15", "the position of OVER");
        assert_eq!(whens[0].1.to_string(), "a > 1");
    }

    #[test]
    fn conditions_keep_their_own_positions_across_lines() {
        assert_eq!(
            error("SELECT lag(temperature) OVER (WHEN\n  device > 1) FROM demo"),
            "invalid operation string > bigint at 2:3"
        );
        assert_eq!(
            error("SELECT lag(temperature) OVER (WHEN device FROM demo"),
            "OVER ( is missing its closing parenthesis at 1:25"
        );
    }

    #[test]
    fn a_when_goes_to_its_analytic_call_or_sliding_window_only() {
        let plan = explain(
            "SELECT latest(temperature) OVER (PARTITION BY device WHEN humidity > 1) FROM demo",
        );
        assert!(
            plan.contains("latest(temperature) OVER (PARTITION BY device WHEN (humidity > 1))"),
            "{plan}"
        );
        assert_eq!(
            error("SELECT row_number() OVER (WHEN temperature > 1) FROM demo"),
            "OVER (WHEN ...) belongs to an analytic function or a SLIDINGWINDOW at 1:21"
        );
        assert_eq!(
            error(
                "SELECT count(*) FROM demo GROUP BY TUMBLINGWINDOW(ss, 10) OVER (WHEN temperature > 1)"
            ),
            "OVER (WHEN ...) is only for SLIDINGWINDOW, not tumblingwindow at 1:59"
        );
    }
}
