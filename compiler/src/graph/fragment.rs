//! One expression of a node's props, parsed on its own by the rule parser.
//!
//! A node's text never meets the rest of the query as text: it is tokenized and parsed alone,
//! must be exactly one expression (or one SELECT field), and only its tree goes on. So
//! `"expr": "1 FROM other"` is a syntax error here, never a second FROM.

use sqlparser::ast::{Expr, SelectItem};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::CompileError;

/// A piece of a node parsed alone: `ast` as written, and `printable`, the same tree with its
/// string literals escaped so that printing it reads back as `ast` (the dialect reads `\` in
/// strings as an escape, and sqlparser prints string values raw).
#[derive(Debug, Clone)]
pub(super) struct Fragment<T> {
    /// The tree as written.
    pub ast: T,
    /// The tree to print.
    pub printable: T,
}

/// Parses `text` as one expression.
pub(super) fn expr(text: &str) -> Result<Fragment<Expr>, String> {
    parse(text, |p: &mut Parser<'_>| p.parse_expr())
}

/// Parses `text` as one SELECT field: `expr`, `expr AS name`, `*` or `* EXCEPT(...)`.
pub(super) fn select_item(text: &str) -> Result<Fragment<SelectItem>, String> {
    parse(text, |p: &mut Parser<'_>| p.parse_select_item())
}

fn parse<T>(
    text: &str,
    rule: impl Fn(&mut Parser<'_>) -> Result<T, ParserError>,
) -> Result<Fragment<T>, String> {
    crate::limits::check_sql(text).map_err(|e| e.to_string())?;
    let (_, whens) = crate::bind::extract_over_whens(text).map_err(|e| e.to_string())?;
    if !whens.is_empty() {
        return Err(
            "OVER (WHEN ...) is not supported in graph nodes; write the rule in SQL".into(),
        );
    }
    let tokens = crate::dialect::ekuiper_tokens(text)
        .map_err(|e| CompileError::at(e.message.clone(), crate::Pos::from_location(e.location)))
        .map_err(|e| e.to_string())?;
    if !tokens.invisible.is_empty() {
        return Err("INVISIBLE belongs to a SELECT field of a SQL rule".into());
    }
    let printable: Vec<TokenWithSpan> = tokens
        .tokens
        .iter()
        .cloned()
        .map(|mut t| {
            if let Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) = &mut t.token {
                *s = s.replace('\\', "\\\\");
            }
            t
        })
        .collect();
    let ast = parse_tokens(tokens.tokens, &rule)?;
    let printable = parse_tokens(printable, &rule)?;
    Ok(Fragment { ast, printable })
}

fn parse_tokens<T>(
    tokens: Vec<TokenWithSpan>,
    rule: &impl Fn(&mut Parser<'_>) -> Result<T, ParserError>,
) -> Result<T, String> {
    let mut parser = crate::dialect::rule_parser(tokens);
    let value = rule(&mut parser).map_err(|e| CompileError::from_parser(e).to_string())?;
    crate::dialect::expect_end(&parser, "expression").map_err(|e| e.to_string())?;
    Ok(value)
}
