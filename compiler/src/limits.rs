//! Limits on SQL input: text size, expression depth, column type nesting, window sizes and
//! string widths. Each is a constant with the reason for its value; every refusal names the
//! limit and the value, so a user knows what to change.
//!
//! The depth limits exist because the binder, the evaluator and `Drop` of the AST recurse: a
//! rule of 60 000 chained `+` would overflow a thread's stack and take the server down. They
//! are checked on tokens, before sqlparser builds a tree that is too deep to even drop.

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::dialect::EkuiperDialect;
use crate::error::{CompileError, Pos, Result};

/// The longest SQL text of a rule or a stream statement, in bytes. Real eKuiper rules are a
/// few KiB at most; 64 KiB leaves room for generated `CASE` lists while bounding the time and
/// memory a single request spends in the tokenizer and parser.
pub const MAX_SQL_BYTES: usize = 64 * 1024;

/// The deepest an expression may nest (operators chained plus parentheses, `CASE` and
/// brackets). The binder takes about 14 KiB of stack per level in a debug build and overflows
/// the 2 MiB stack of a tokio thread at about 130 levels (measured; release builds go much
/// deeper); 64 keeps a 2x margin there and for the evaluator, and hand-written rules stay far
/// below it. (The bound over-counts mixed operators such as `a = 1 AND b = 2` by up to 2x.)
pub const MAX_EXPR_DEPTH: usize = 64;

/// sqlparser's own recursion limit (its default is 50). It counts about three levels per
/// nested function call, so four times [`MAX_EXPR_DEPTH`] lets the token check, which comes
/// first and names the position, decide; this one backs it up (sqlparser also grows its stack
/// on demand, so the parser itself is safe at any depth).
pub const MAX_PARSER_RECURSION: usize = 4 * MAX_EXPR_DEPTH;

/// The deepest `ARRAY(...)`/`STRUCT(...)` nesting of a column type. JSON payloads nested more
/// than a handful of levels are rare; 32 keeps the recursive type parser, the Arrow type
/// built from it and its `Drop` far from the end of the stack.
pub const MAX_TYPE_NESTING: usize = 32;

/// The longest time window (`TUMBLINGWINDOW`, `HOPPINGWINDOW`, `SLIDINGWINDOW`,
/// `SESSIONWINDOW` sizes, hops, delays and timeouts): one year in milliseconds. A window holds
/// its rows until it closes, so longer windows only grow state; the bound also keeps
/// `unit * n` and the timestamp arithmetic on it far from `u64`/`i64` overflow.
pub const MAX_WINDOW_MS: u64 = 366 * 24 * 3600 * 1000;

/// The most rows a `COUNTWINDOW` may hold (size and step). A count window keeps its rows in
/// memory; 1 Mi rows is far above eKuiper examples (tens to thousands) and bounds that memory.
pub const MAX_COUNT_WINDOW: u64 = 1 << 20;

/// The widest `lpad`/`rpad` padding, in characters. The width may come from the data, so one
/// row could ask for gigabytes; display formats need tens of characters, and 64 Ki bounds a
/// batch of 1 024 rows to 64 MiB of padding.
pub const MAX_PAD_WIDTH: i64 = 1 << 16;

/// Refuses SQL text longer than [`MAX_SQL_BYTES`].
pub fn check_sql_size(sql: &str) -> Result<()> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(CompileError::new(format!(
            "SQL text of {} bytes is above the limit of {MAX_SQL_BYTES}",
            sql.len()
        )));
    }
    Ok(())
}

/// The error for an expression nested deeper than [`MAX_EXPR_DEPTH`].
fn too_deep(pos: Option<Pos>) -> CompileError {
    CompileError::at(
        format!("expression nesting is above the limit of {MAX_EXPR_DEPTH} levels"),
        pos,
    )
}

/// One open group (the whole text, a parenthesis, a bracket, a brace or a `CASE`).
#[derive(Default)]
struct Group {
    /// Opened by `CASE` (closed by `END`).
    case: bool,
    /// Operator tokens in the current sibling expression (since the last `,`, `WHEN`, ...).
    ops: usize,
    /// The deepest nested group in the current sibling expression.
    child: usize,
    /// The deepest finished sibling expression.
    best: usize,
}

impl Group {
    fn current(&self) -> usize {
        self.ops + self.child
    }

    fn end_sibling(&mut self) {
        self.best = self.best.max(self.current());
        self.ops = 0;
        self.child = 0;
    }

    fn depth(&self) -> usize {
        self.best.max(self.current()) + 1
    }
}

/// Checks the text size and that no expression nests deeper than [`MAX_EXPR_DEPTH`], on
/// tokens, before parsing.
///
/// An upper bound of the tree depth: within one sibling expression (between commas, `WHEN`s,
/// clause keywords) every operator token may add a level (sqlparser builds `a + b + c` as a
/// left-deep chain without recursing, so the parser's own limit does not see it), and every
/// parenthesis, bracket or `CASE` adds one level above the deepest expression inside it.
/// Identifiers, literals and `.` add none (sqlparser keeps `a.b.c` flat).
pub fn check_sql(sql: &str) -> Result<()> {
    check_sql_size(sql)?;
    // A tokenizer error is left for the parser, which reports it with its position.
    let Ok(tokens) = Tokenizer::new(&EkuiperDialect, sql).tokenize_with_location() else {
        return Ok(());
    };
    let mut stack = vec![Group::default()];
    let mut prev_keyword = Keyword::NoKeyword;
    for t in &tokens {
        let pos = || Pos::from_location(t.span.start);
        let keyword = match &t.token {
            Token::Word(w) if w.quote_style.is_none() => w.keyword,
            _ => Keyword::NoKeyword,
        };
        let top = stack.last_mut().expect("the root group stays");
        match &t.token {
            Token::Whitespace(_) | Token::EOF | Token::Period | Token::SemiColon => {}
            Token::LParen | Token::LBracket | Token::LBrace => {
                stack.push(Group::default());
            }
            Token::Word(_) if keyword == Keyword::CASE => {
                stack.push(Group {
                    case: true,
                    ..Group::default()
                });
            }
            Token::RParen | Token::RBracket | Token::RBrace => close(&mut stack, false),
            Token::Word(_) if keyword == Keyword::END && top.case => close(&mut stack, true),
            Token::Comma => top.end_sibling(),
            Token::Word(_) if ends_expression(keyword, prev_keyword) => top.end_sibling(),
            // Identifiers add no level.
            Token::Word(_) if keyword == Keyword::NoKeyword => {}
            Token::Word(_) => top.ops += 1,
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_) => {}
            // Every other token is an operator or something unusual: count it.
            _ => top.ops += 1,
        }
        if !matches!(t.token, Token::Whitespace(_)) {
            prev_keyword = keyword;
        }
        let top = stack.last().expect("the root group stays");
        if stack.len() > MAX_EXPR_DEPTH || top.current() + stack.len() > MAX_EXPR_DEPTH + 1 {
            return Err(too_deep(pos()));
        }
    }
    // Unclosed groups: fold them into their parents, as if closed at the end (a `CASE` by
    // its missing `END`, else the loop would never end).
    while stack.len() > 1 {
        let case = stack.last().is_some_and(|g| g.case);
        close(&mut stack, case);
    }
    if stack[0].depth() > MAX_EXPR_DEPTH + 1 {
        return Err(too_deep(None));
    }
    Ok(())
}

/// Closes the innermost group (a `CASE` only by `END`); a stray closer is ignored.
fn close(stack: &mut Vec<Group>, end: bool) {
    if stack.len() < 2 || stack.last().is_some_and(|g| g.case != end) {
        return;
    }
    let done = stack.pop().expect("checked above");
    let parent = stack.last_mut().expect("checked above");
    parent.child = parent.child.max(done.depth());
}

/// Keywords that end one expression and start a sibling one (clauses, `CASE` branches);
/// `DISTINCT FROM` and `WITHIN GROUP` continue an expression, so they do not count.
fn ends_expression(keyword: Keyword, prev: Keyword) -> bool {
    match keyword {
        Keyword::SELECT
        | Keyword::WHERE
        | Keyword::HAVING
        | Keyword::ORDER
        | Keyword::LIMIT
        | Keyword::WHEN
        | Keyword::THEN
        | Keyword::ELSE => true,
        Keyword::FROM => prev != Keyword::DISTINCT,
        Keyword::GROUP => prev != Keyword::WITHIN,
        _ => false,
    }
}

/// The time a window argument `n` in `unit_ms` units spans, refused above [`MAX_WINDOW_MS`].
pub fn window_ms(function: &str, unit_ms: u64, n: u64) -> std::result::Result<u64, String> {
    match unit_ms.checked_mul(n) {
        Some(ms) if ms <= MAX_WINDOW_MS => Ok(ms),
        _ => Err(format!(
            "{function} length of {n} units of {unit_ms} ms is above the limit of {MAX_WINDOW_MS} ms (366 days)"
        )),
    }
}

/// A `COUNTWINDOW` size or step, refused above [`MAX_COUNT_WINDOW`].
pub fn count_window_rows(n: u64) -> std::result::Result<u64, String> {
    if n > MAX_COUNT_WINDOW {
        return Err(format!(
            "countwindow size {n} is above the limit of {MAX_COUNT_WINDOW} rows"
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `1 op 1 op 1 ...` with `n` operators.
    fn ops(op: &str, n: usize) -> String {
        let mut e = String::from("1");
        for _ in 0..n {
            e.push_str(op);
            e.push('1');
        }
        e
    }

    fn chain(op: &str, n: usize) -> String {
        format!("SELECT {} FROM demo", ops(op, n))
    }

    #[test]
    fn text_size_is_bounded() {
        let long = format!(
            "SELECT a FROM demo WHERE b = '{}'",
            "x".repeat(MAX_SQL_BYTES)
        );
        let err = check_sql(&long).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "SQL text of {} bytes is above the limit of {MAX_SQL_BYTES}",
                long.len()
            )
        );
        assert!(check_sql("SELECT a FROM demo").is_ok());
    }

    #[test]
    fn long_operator_chains_are_refused_short_ones_pass() {
        assert!(check_sql(&chain(" + ", 60)).is_ok());
        let err = check_sql(&chain(" + ", 70)).unwrap_err().to_string();
        assert!(
            err.starts_with("expression nesting is above the limit of 64 levels at 1:"),
            "{err}"
        );
        assert!(check_sql(&chain(" AND ", 70)).is_err());
        assert!(check_sql(&chain("->", 70)).is_err());
    }

    #[test]
    fn depth_adds_up_across_parentheses() {
        // Each level's chain is short, but the operand in parentheses sits at the bottom of the
        // outer left-deep chain, so the depths add up.
        let mut sql = String::from("1");
        for _ in 0..10 {
            sql = format!("({sql}) + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1");
        }
        let err = check_sql(&format!("SELECT {sql} FROM demo")).unwrap_err();
        assert!(err.reason.contains("limit of 64"), "{err}");
        let deep = format!("SELECT {}1{} FROM demo", "(".repeat(300), ")".repeat(300));
        assert!(check_sql(&deep).is_err());
        let unclosed = format!("SELECT {}1 FROM demo", "f(".repeat(300));
        assert!(check_sql(&unclosed).is_err());
        let cases = format!(
            "SELECT {} 1 FROM demo",
            "CASE WHEN a THEN 1 ELSE ".repeat(300)
        );
        assert!(check_sql(&cases).is_err());
    }

    #[test]
    fn siblings_do_not_add_up() {
        // Many select items, arguments and CASE branches: wide, not deep.
        let items = vec!["a + b + c + d"; 400].join(", ");
        assert!(check_sql(&format!("SELECT {items} FROM demo")).is_ok());
        let args = vec!["a * 2 + 1"; 400].join(", ");
        assert!(check_sql(&format!("SELECT concat({args}) FROM demo")).is_ok());
        let branches = "WHEN a = 1 + 1 THEN 'x' + 1 ".repeat(300);
        assert!(check_sql(&format!("SELECT CASE {branches} END FROM demo")).is_ok());
        let clauses = format!(
            "SELECT {} FROM demo WHERE {} GROUP BY {} HAVING {}",
            ops(" + ", 60),
            ops(" + ", 60),
            ops(" + ", 60),
            ops(" + ", 60)
        );
        assert!(check_sql(&clauses).is_ok());
    }

    #[test]
    fn distinct_from_and_within_group_do_not_reset() {
        let mut sql = String::from("SELECT 1");
        for _ in 0..20 {
            sql.push_str(" + 1 + 1 IS NOT DISTINCT FROM 1");
        }
        assert!(check_sql(&sql).is_err());
    }

    /// Compiles `sql` against stream `demo` on a thread with tokio's 2 MiB stack, as the
    /// REST handlers do.
    fn compile_on_small_stack(sql: String) -> std::result::Result<(), String> {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let def = crate::parse_create(
                    "CREATE STREAM demo (a BIGINT, b BIGINT, s STRING) WITH (DATASOURCE=\"d\")",
                )
                .expect("stream");
                let catalog: std::collections::HashMap<String, crate::StreamDef> =
                    [("demo".to_string(), def)].into();
                crate::compile_rule(&sql, &catalog, crate::Registry::builtin())
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
            .expect("thread")
            .join()
            .expect("no stack overflow")
    }

    #[test]
    fn the_deepest_allowed_rules_bind_on_a_small_stack() {
        // Just inside the limit, in the shapes that nest deepest per token.
        let chain = format!("SELECT {} AS x FROM demo", vec!["a"; 63].join(" + "));
        compile_on_small_stack(chain).expect("a chain of 62 operators binds");
        let nest = |open: &str, close: &str, n: usize| {
            format!(
                "SELECT {}a{} AS x FROM demo",
                open.repeat(n),
                close.repeat(n)
            )
        };
        compile_on_small_stack(nest("(", ")", 62)).expect("62 parentheses bind");
        // `abs` is a keyword to sqlparser, so it counts as well as its parenthesis.
        compile_on_small_stack(nest("abs(", ")", 31)).expect("31 nested calls bind");
        compile_on_small_stack(nest("CASE WHEN a > 1 THEN ", " END", 60))
            .expect("60 nested CASEs bind");
        // Far past it: refused, not a crash.
        let err = compile_on_small_stack(format!(
            "SELECT {} AS x FROM demo",
            vec!["a"; 5_000].join(" + ")
        ))
        .unwrap_err();
        assert!(err.contains("limit of 64"), "{err}");
    }

    #[test]
    fn window_bounds() {
        assert_eq!(window_ms("tumblingwindow", 1000, 10), Ok(10_000));
        assert_eq!(
            window_ms("tumblingwindow", 86_400_000, 400).unwrap_err(),
            "tumblingwindow length of 400 units of 86400000 ms is above the limit of 31622400000 ms (366 days)"
        );
        assert!(window_ms("hoppingwindow", 86_400_000, u64::MAX).is_err());
        assert_eq!(count_window_rows(5), Ok(5));
        assert_eq!(
            count_window_rows(1 << 40).unwrap_err(),
            "countwindow size 1099511627776 is above the limit of 1048576 rows"
        );
    }
}
