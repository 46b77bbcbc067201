//! The sqlparser dialect for eKuiper's SQL.
//!
//! Differences from sqlparser's generic dialect that matter for eKuiper rules:
//! - `"x"` is a string literal (only backticks delimit identifiers);
//! - `->`, `&` bind like `*` and `|`, `^` like `+` (eKuiper's precedence table);
//! - `cast(x, "bigint")`, `substring(s, 1, 3)`, `trim(s)`, `ceil(x)`, `floor(x)`, ... are plain
//!   function calls, not SQL's special forms;
//! - `* EXCEPT(a, b)` and the window `FILTER (WHERE ...)` modifier parse;
//! - [`ekuiper_tokens`] fixes what a dialect cannot: `ALL` and `DISTINCT` are identifiers, a
//!   SELECT field may end with `INVISIBLE`, `*` may take `EXCEPT(...)` as a function argument.

use std::any::TypeId;

use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    ObjectName, ObjectNamePart,
};
use sqlparser::dialect::{Dialect, GenericDialect};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, TokenizerError, Word};

/// eKuiper's SQL dialect for sqlparser.
#[derive(Debug, Default, Clone, Copy)]
pub struct EkuiperDialect;

/// Keywords that sqlparser parses with special syntax but eKuiper treats as function names.
const PLAIN_CALL_KEYWORDS: &[Keyword] = &[
    Keyword::CAST,
    Keyword::TRY_CAST,
    Keyword::SAFE_CAST,
    Keyword::SUBSTRING,
    Keyword::SUBSTR,
    Keyword::TRIM,
    Keyword::CEIL,
    Keyword::CEILING,
    Keyword::FLOOR,
    Keyword::POSITION,
    Keyword::EXTRACT,
    Keyword::OVERLAY,
    Keyword::CONVERT,
    Keyword::LEFT,
    Keyword::RIGHT,
];

impl Dialect for EkuiperDialect {
    fn dialect(&self) -> TypeId {
        // Keep sqlparser's generic-only parser paths (e.g. `^` as XOR, not Postgres' power).
        TypeId::of::<GenericDialect>()
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`'
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        GenericDialect.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        GenericDialect.is_identifier_part(ch)
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        true
    }

    fn supports_select_wildcard_replace(&self) -> bool {
        true
    }

    fn supports_select_wildcard_except(&self) -> bool {
        true
    }

    fn supports_string_literal_backslash_escape(&self) -> bool {
        true
    }

    /// eKuiper names a field only with `AS` (`xsql/parser.go`, `parseAlias`): `SELECT a b`
    /// is an error, not `a AS b`.
    fn is_select_item_alias(&self, explicit: bool, _kw: &Keyword, _parser: &mut Parser) -> bool {
        explicit
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        let mul = self.prec_value(sqlparser::dialect::Precedence::MulDivModOp);
        let plus = self.prec_value(sqlparser::dialect::Precedence::PlusMinus);
        match parser.peek_token().token {
            // Tighter than `*` so `a->b * 2` is `(a->b) * 2`.
            Token::Arrow => Some(Ok(mul + 5)),
            Token::Ampersand => Some(Ok(mul)),
            Token::Pipe | Token::Caret => Some(Ok(plus)),
            _ => None,
        }
    }

    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        let tok = parser.peek_token();
        let Token::Word(word) = &tok.token else {
            return None;
        };
        if word.quote_style.is_some()
            || !PLAIN_CALL_KEYWORDS.contains(&word.keyword)
            || parser.peek_nth_token(1).token != Token::LParen
        {
            return None;
        }
        Some(parse_plain_call(parser))
    }
}

/// Parses `name(arg, ...)` as an ordinary function call.
fn parse_plain_call(parser: &mut Parser) -> Result<Expr, ParserError> {
    let name_tok = parser.next_token();
    let Token::Word(word) = name_tok.token else {
        return parser.expected("a function name", name_tok);
    };
    parser.expect_token(&Token::LParen)?;
    let args = if parser.consume_token(&Token::RParen) {
        Vec::new()
    } else {
        let args = parser.parse_comma_separated(Parser::parse_expr)?;
        parser.expect_token(&Token::RParen)?;
        args
    };
    let ident = Ident::with_span(name_tok.span, word.value);
    Ok(Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(ident)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    }))
}

/// The name a `* EXCEPT(a, b)` function argument is rewritten to (see [`ekuiper_tokens`]): the
/// binder reads `__row_except(a, b)` as the whole row without `a` and `b`.
pub(crate) const ROW_EXCEPT: &str = "__row_except";

/// A rule's tokens with eKuiper's words read the eKuiper way, and which SELECT fields end with
/// `INVISIBLE`.
pub(crate) struct EkuiperTokens {
    /// The tokens for sqlparser, positions unchanged.
    pub(crate) tokens: Vec<TokenWithSpan>,
    /// Indexes of the SELECT fields written `expr [AS alias] INVISIBLE` (`xsql/parser.go`).
    pub(crate) invisible: Vec<usize>,
}

/// Tokenizes `sql` and adjusts the tokens where eKuiper's lexer and parser differ from
/// sqlparser's (`xsql/lexical.go`, `xsql/parser.go`):
/// - `ALL` and `DISTINCT` are not keywords in eKuiper, so they become plain identifiers
///   (a column may be named `all` or `distinct`);
/// - a SELECT field may end with `INVISIBLE` (any case): the word is taken out and the field's
///   index recorded;
/// - `* EXCEPT(a, b)` as a function argument becomes the call [`ROW_EXCEPT`]`(a, b)`.
pub(crate) fn ekuiper_tokens(sql: &str) -> Result<EkuiperTokens, TokenizerError> {
    let mut tokens = Tokenizer::new(&EkuiperDialect, sql).tokenize_with_location()?;
    for t in &mut tokens {
        if let Token::Word(w) = &mut t.token
            && w.quote_style.is_none()
            && matches!(w.keyword, Keyword::ALL | Keyword::DISTINCT)
        {
            w.keyword = Keyword::NoKeyword;
        }
    }
    let mut drop = vec![false; tokens.len()];
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    let at = |k: usize| significant.get(k).map(|&i| &tokens[i].token);
    let is_word = |t: Option<&Token>, w: &str| matches!(t, Some(Token::Word(x)) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    // The SELECT list: fields are split by commas outside parentheses and brackets.
    let mut invisible = Vec::new();
    if let Some(first) = (0..significant.len()).find(|&k| is_word(at(k), "select")) {
        let (mut depth, mut field) = (0usize, 0usize);
        for k in first + 1..significant.len() {
            match at(k) {
                Some(Token::LParen | Token::LBracket) => depth += 1,
                Some(Token::RParen | Token::RBracket) => depth = depth.saturating_sub(1),
                Some(Token::Comma) if depth == 0 => field += 1,
                t if depth == 0 && is_word(t, "from") => break,
                t if depth == 0
                    && is_word(t, "invisible")
                    && (matches!(at(k + 1), Some(Token::Comma) | None)
                        || is_word(at(k + 1), "from"))
                    && !matches!(at(k - 1), Some(Token::Comma))
                    && !is_word(at(k - 1), "select")
                    && !is_word(at(k - 1), "as") =>
                {
                    drop[significant[k]] = true;
                    invisible.push(field);
                }
                _ => {}
            }
        }
    }
    // `f(..., * EXCEPT(a, b), ...)`.
    let stars: Vec<usize> = (1..significant.len())
        .filter(|&k| {
            matches!(at(k), Some(Token::Mul))
                && matches!(at(k - 1), Some(Token::LParen | Token::Comma))
                && is_word(at(k + 1), "except")
                && matches!(at(k + 2), Some(Token::LParen))
                && depth_before(&tokens, significant[k]) > 0
        })
        .collect();
    for k in stars {
        tokens[significant[k]].token = Token::Word(Word {
            value: ROW_EXCEPT.to_string(),
            quote_style: None,
            keyword: Keyword::NoKeyword,
        });
        drop[significant[k + 1]] = true;
    }
    let tokens = tokens
        .into_iter()
        .zip(drop)
        .filter_map(|(t, d)| (!d).then_some(t))
        .collect();
    Ok(EkuiperTokens { tokens, invisible })
}

/// A rule parser over `tokens`, with the nesting limit of [`crate::limits`].
pub(crate) fn rule_parser(tokens: Vec<TokenWithSpan>) -> Parser<'static> {
    Parser::new(&EkuiperDialect)
        .with_recursion_limit(crate::limits::MAX_PARSER_RECURSION)
        .with_tokens_with_locations(tokens)
}

/// An error unless `parser` has read all its tokens; `what` names what it parsed.
pub(crate) fn expect_end(parser: &Parser, what: &str) -> Result<(), crate::CompileError> {
    let next = parser.peek_token();
    if next.token == Token::EOF {
        return Ok(());
    }
    Err(crate::CompileError::at(
        format!(
            "syntax error: unexpected \"{}\" after the {what}",
            next.token
        ),
        crate::Pos::from_location(next.span.start),
    ))
}

/// How many parentheses are open before token `i`.
fn depth_before(tokens: &[TokenWithSpan], i: usize) -> usize {
    tokens[..i].iter().fold(0usize, |d, t| match t.token {
        Token::LParen => d + 1,
        Token::RParen => d.saturating_sub(1),
        _ => d,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(sql: &str) -> (Vec<String>, Vec<usize>) {
        let t = ekuiper_tokens(sql).expect("tokens");
        let words = t
            .tokens
            .iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .map(|t| t.token.to_string())
            .collect();
        (words, t.invisible)
    }

    #[test]
    fn invisible_ends_a_select_field_in_any_case() {
        let (w, inv) = words("SELECT a AS x invisible, b, c + 1 INVISIBLE FROM s");
        assert_eq!(inv, [0, 2]);
        assert!(
            !w.iter().any(|w| w.eq_ignore_ascii_case("invisible")),
            "{w:?}"
        );
        // A column named invisible stays a column.
        assert!(
            words("SELECT invisible, a AS invisible FROM s")
                .1
                .is_empty()
        );
    }

    #[test]
    fn all_and_distinct_are_identifiers() {
        let t = ekuiper_tokens("SELECT distinct, all FROM s").expect("tokens");
        let plain = t.tokens.iter().filter(|t| {
            matches!(&t.token, Token::Word(w) if w.keyword == Keyword::NoKeyword
                && (w.value == "distinct" || w.value == "all"))
        });
        assert_eq!(plain.count(), 2);
    }

    #[test]
    fn star_except_as_an_argument_becomes_a_call() {
        let (w, _) = words("SELECT f(* EXCEPT(a, b)), * EXCEPT(c) FROM s");
        assert_eq!(w[..4], ["SELECT", "f", "(", ROW_EXCEPT]);
        assert!(
            w.contains(&"EXCEPT".to_string()),
            "the SELECT-level form stays: {w:?}"
        );
    }
}
