//! The sqlparser dialect for eKuiper's SQL.
//!
//! Differences from sqlparser's generic dialect that matter for eKuiper rules:
//! - `"x"` is a string literal (only backticks delimit identifiers);
//! - `->`, `&` bind like `*` and `|`, `^` like `+` (eKuiper's precedence table);
//! - `cast(x, "bigint")`, `substring(s, 1, 3)`, `trim(s)`, `ceil(x)`, `floor(x)`, ... are plain
//!   function calls, not SQL's special forms;
//! - `* EXCEPT(a, b)` and the window `FILTER (WHERE ...)` modifier parse.

use std::any::TypeId;

use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    ObjectName, ObjectNamePart,
};
use sqlparser::dialect::{Dialect, GenericDialect};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

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
