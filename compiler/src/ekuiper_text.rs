//! An expression as eKuiper prints its AST (`binaryExpr:{ demo.size * 5 }`,
//! `Call:{ name:abs, args:[demo.a] }`), for the error texts eKuiper users match on: a failing
//! SELECT field is reported as `run Select error: expr: <this text> meet error, err:...`
//! (eKuiper's `topo/operator/project_operator.go` and `pkg/ast/expr.go`).

use sqlparser::ast::{
    self as ast, BinaryOperator, FunctionArg, FunctionArgExpr, FunctionArguments, UnaryOperator,
};

/// Renders `e` as eKuiper's `String()` would, unqualified fields qualified with `stream`.
pub fn expr_text(e: &ast::Expr, stream: &str) -> String {
    match e {
        ast::Expr::Identifier(i) => format!("{stream}.{}", i.value),
        ast::Expr::CompoundIdentifier(parts) => parts
            .iter()
            .map(|p| p.value.as_str())
            .collect::<Vec<_>>()
            .join("."),
        ast::Expr::Value(v) => value_text(&v.value),
        ast::Expr::Nested(inner) => format!("parenExpr:{{ {} }}", expr_text(inner, stream)),
        ast::Expr::BinaryOp { left, op, right } => format!(
            "binaryExpr:{{ {} {} {} }}",
            expr_text(left, stream),
            operator(op),
            expr_text(right, stream)
        ),
        ast::Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => format!("-{}", expr_text(expr, stream)),
        ast::Expr::Function(f) => {
            let name = f.name.to_string().to_lowercase();
            let args: Vec<String> = match &f.args {
                FunctionArguments::List(list) => list
                    .args
                    .iter()
                    .map(|a| match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(x))
                        | FunctionArg::Named {
                            arg: FunctionArgExpr::Expr(x),
                            ..
                        } => expr_text(x, stream),
                        _ => "*".to_string(),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            if args.is_empty() {
                format!("Call:{{ name:{name} }}")
            } else {
                format!("Call:{{ name:{name}, args:[{}] }}", args.join(", "))
            }
        }
        ast::Expr::Wildcard(_) => "*".to_string(),
        other => other.to_string(),
    }
}

/// eKuiper's token text of a binary operator.
fn operator(op: &BinaryOperator) -> String {
    match op {
        BinaryOperator::NotEq => "!=".to_string(),
        BinaryOperator::And => "AND".to_string(),
        BinaryOperator::Or => "OR".to_string(),
        other => other.to_string(),
    }
}

/// Literals as eKuiper prints them: strings without quotes, numbers and booleans as written.
fn value_text(v: &ast::Value) -> String {
    match v {
        ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
        ast::Value::Boolean(b) => b.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(sql: &str) -> String {
        let stmt = sqlparser::parser::Parser::new(&crate::dialect::EkuiperDialect)
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statement())
            .expect("parses");
        let ast::Statement::Query(q) = stmt else {
            panic!("a query")
        };
        let ast::SetExpr::Select(sel) = q.body.as_ref() else {
            panic!("a select")
        };
        match &sel.projection[0] {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                expr_text(e, "ldemo")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn prints_like_ekuipers_ast() {
        assert_eq!(
            text("SELECT size * 5 FROM ldemo"),
            "binaryExpr:{ ldemo.size * 5 }"
        );
        assert_eq!(
            text("SELECT avg(a) > 0 AND b <> \"x\" FROM ldemo"),
            "binaryExpr:{ binaryExpr:{ Call:{ name:avg, args:[ldemo.a] } > 0 } AND binaryExpr:{ ldemo.b != x } }"
        );
        assert_eq!(
            text("SELECT count(*) FROM ldemo"),
            "Call:{ name:count, args:[*] }"
        );
        assert_eq!(text("SELECT now() FROM ldemo"), "Call:{ name:now }");
    }
}
