//! Binding: sqlparser's AST of a rule query becomes a typed [`LogicalPlan`].
//!
//! Names are resolved against the catalog (fields of schema streams checked, with a
//! "did you mean"; schemaless fields resolved at run time), functions are looked up in the
//! registry and their arguments checked, and every error carries the position it refers to.

use std::collections::HashMap;

use arrow::datatypes::SchemaRef;
use sqlparser::ast::{
    self as ast, AccessExpr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    SelectItem, SetExpr, Spanned, Subscript, TableFactor, UnaryOperator, Value,
};
use sqlparser::parser::Parser;

use crate::ddl::StreamDef;
use crate::dialect::EkuiperDialect;
use crate::error::{CompileError, Pos, Result, did_you_mean};
use crate::eval::Literal;
use crate::eval::ops::BinaryOp;
use crate::expr::Expr;
use crate::functions::{ArgInfo, Registry};
use crate::plan::{LogicalPlan, ProjectItem, RulePlan, Scan};
use crate::types::SqlType;

/// Where the binder finds streams.
pub trait StreamCatalog {
    /// The stream called `name` (case-sensitive, like eKuiper).
    fn stream(&self, name: &str) -> Option<&StreamDef>;
    /// All stream names, for suggestions.
    fn stream_names(&self) -> Vec<String>;
}

impl StreamCatalog for HashMap<String, StreamDef> {
    fn stream(&self, name: &str) -> Option<&StreamDef> {
        self.get(name)
    }
    fn stream_names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
}

/// Names of eKuiper's aggregate functions: they need GROUP BY with a window.
const AGGREGATES: &[&str] = &[
    "avg",
    "count",
    "max",
    "min",
    "sum",
    "collect",
    "last_value",
    "merge_agg",
    "deduplicate",
    "median",
    "stddev",
    "stddevs",
    "var",
    "vars",
    "percentile_cont",
    "percentile_disc",
];

fn pos_of(node: &impl Spanned) -> Option<Pos> {
    Pos::from_location(node.span().start)
}

/// Compiles a rule's SQL against the catalog and function registry.
pub fn compile_rule(
    sql: &str,
    catalog: &dyn StreamCatalog,
    registry: &Registry,
) -> Result<RulePlan> {
    let mut parser = Parser::new(&EkuiperDialect)
        .try_with_sql(sql)
        .map_err(CompileError::from_parser)?;
    let stmt = parser
        .parse_statement()
        .map_err(CompileError::from_parser)?;
    // Allow one trailing semicolon, nothing else.
    while parser.consume_token(&sqlparser::tokenizer::Token::SemiColon) {}
    let next = parser.peek_token();
    if next.token != sqlparser::tokenizer::Token::EOF {
        return Err(CompileError::at(
            format!(
                "syntax error: unexpected \"{}\" after the query",
                next.token
            ),
            Pos::from_location(next.span.start),
        ));
    }
    let ast::Statement::Query(query) = stmt else {
        return Err(CompileError::at(
            "a rule must be a SELECT statement",
            Some(Pos { line: 1, column: 1 }),
        ));
    };
    if let Some(order) = &query.order_by {
        return Err(CompileError::at(
            "ORDER BY is not supported yet (it comes with windows)",
            pos_of(order),
        ));
    }
    if let Some(limit) = &query.limit_clause {
        return Err(CompileError::at(
            "LIMIT is not supported yet (it comes with windows)",
            pos_of(limit),
        ));
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(CompileError::at(
            "a rule must be a single SELECT",
            pos_of(query.body.as_ref()),
        ));
    };
    if let GroupByExpr::Expressions(exprs, _) = &select.group_by
        && let Some(first) = exprs.first()
    {
        return Err(CompileError::at(
            "GROUP BY is not supported yet (windows and aggregates come in their own release)",
            pos_of(first),
        ));
    }
    if let Some(h) = &select.having {
        return Err(CompileError::at("HAVING needs GROUP BY", pos_of(h)));
    }
    if select.distinct.is_some() {
        return Err(CompileError::at(
            "DISTINCT is not part of eKuiper's SQL",
            pos_of(select.as_ref()),
        ));
    }
    let scan = bind_from(select, catalog)?;
    let mut binder = Binder {
        scan: &scan,
        registry,
        aliases: HashMap::new(),
        resolving: Vec::new(),
    };
    // Aliases may be referenced by other SELECT fields (not by WHERE), as in eKuiper.
    for item in &select.projection {
        if let SelectItem::ExprWithAlias { expr, alias } = item {
            binder
                .aliases
                .entry(alias.value.to_lowercase())
                .or_insert_with(|| expr.clone());
        }
    }
    let mut plan = LogicalPlan::Scan(scan.clone());
    if let Some(selection) = &select.selection {
        let aliases = std::mem::take(&mut binder.aliases);
        let predicate = binder.expr(selection)?;
        binder.aliases = aliases;
        if let SqlType::Known(t) = predicate.sql_type()
            && t != arrow::datatypes::DataType::Boolean
            && t != arrow::datatypes::DataType::Null
        {
            return Err(CompileError::at(
                format!(
                    "WHERE needs a boolean condition, got {}",
                    crate::types::type_name(&t)
                ),
                pos_of(selection),
            ));
        }
        plan = LogicalPlan::Filter {
            input: Box::new(plan),
            predicate,
        };
    }
    let items = binder.projection(&select.projection)?;
    plan = LogicalPlan::Project {
        input: Box::new(plan),
        items,
    };
    Ok(RulePlan {
        sql: sql.to_string(),
        plan,
    })
}

fn bind_from(select: &ast::Select, catalog: &dyn StreamCatalog) -> Result<Scan> {
    let Some(from) = select.from.first() else {
        return Err(CompileError::at(
            "a rule needs FROM and a stream",
            pos_of(select),
        ));
    };
    if select.from.len() > 1 {
        return Err(CompileError::at(
            "only one stream may follow FROM",
            pos_of(&select.from[1]),
        ));
    }
    if let Some(join) = from.joins.first() {
        return Err(CompileError::at(
            "joins are not supported yet (they come with tables)",
            pos_of(join),
        ));
    }
    let TableFactor::Table { name, alias, .. } = &from.relation else {
        return Err(CompileError::at(
            "FROM must name a stream",
            pos_of(&from.relation),
        ));
    };
    let stream_name = name.to_string().trim_matches('`').to_string();
    let Some(def) = catalog.stream(&stream_name) else {
        let names = catalog.stream_names();
        return Err(
            CompileError::at(format!("unknown stream \"{stream_name}\""), pos_of(name))
                .with_hint(did_you_mean(&stream_name, names.iter().map(String::as_str))),
        );
    };
    Ok(Scan {
        stream: def.name.clone(),
        alias: alias.as_ref().map(|a| a.name.value.clone()),
        schema: def.arrow_schema(),
    })
}

struct Binder<'a> {
    scan: &'a Scan,
    registry: &'a Registry,
    /// SELECT aliases (lowercased) to their expressions.
    aliases: HashMap<String, ast::Expr>,
    /// Aliases being expanded, to stop `a + 1 AS a` from referring to itself.
    resolving: Vec<String>,
}

impl Binder<'_> {
    fn schema(&self) -> Option<&SchemaRef> {
        self.scan.schema.as_ref()
    }

    fn is_stream_name(&self, name: &str) -> bool {
        name == self.scan.stream || self.scan.alias.as_deref() == Some(name)
    }

    fn column(&mut self, ident: &ast::Ident) -> Result<Expr> {
        let key = ident.value.to_lowercase();
        if !self.resolving.contains(&key)
            && let Some(aliased) = self.aliases.get(&key).cloned()
        {
            self.resolving.push(key);
            let bound = self.expr(&aliased);
            self.resolving.pop();
            return bound;
        }
        self.field(&ident.value, Pos::from_location(ident.span.start))
    }

    fn field(&self, name: &str, pos: Option<Pos>) -> Result<Expr> {
        match self.schema() {
            None => Ok(Expr::Column {
                name: name.to_string(),
                ty: SqlType::Any,
            }),
            Some(schema) => {
                let found = schema
                    .fields()
                    .iter()
                    .find(|f| f.name() == name)
                    .or_else(|| {
                        schema
                            .fields()
                            .iter()
                            .find(|f| f.name().eq_ignore_ascii_case(name))
                    });
                match found {
                    Some(f) => Ok(Expr::Column {
                        name: f.name().clone(),
                        ty: SqlType::Known(f.data_type().clone()),
                    }),
                    None => Err(CompileError::at(
                        format!(
                            "unknown field \"{name}\" in stream \"{}\"",
                            self.scan.stream
                        ),
                        pos,
                    )
                    .with_hint(did_you_mean(
                        name,
                        schema.fields().iter().map(|f| f.name().as_str()),
                    ))),
                }
            }
        }
    }

    fn projection(&mut self, items: &[SelectItem]) -> Result<Vec<ProjectItem>> {
        let mut out = Vec::with_capacity(items.len());
        let mut unnamed = 0usize;
        for item in items {
            match item {
                SelectItem::Wildcard(opts) => {
                    if let Some(r) = &opts.opt_replace {
                        return Err(CompileError::at(
                            "* REPLACE is not supported yet",
                            pos_of(r),
                        ));
                    }
                    let except = opts
                        .opt_except
                        .as_ref()
                        .map(|e| {
                            std::iter::once(&e.first_element)
                                .chain(e.additional_elements.iter())
                                .map(|i| i.value.clone())
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(ProjectItem::Wildcard { except });
                }
                SelectItem::QualifiedWildcard(kind, _) => {
                    let name = kind.to_string();
                    let name = name.trim_end_matches(".*");
                    if !self.is_stream_name(name) {
                        return Err(CompileError::at(
                            format!("unknown stream \"{name}\""),
                            pos_of(item),
                        ));
                    }
                    out.push(ProjectItem::Wildcard { except: Vec::new() });
                }
                SelectItem::UnnamedExpr(e) => {
                    let bound = self.expr(e)?;
                    let name = match self.natural_name(e) {
                        Some(n) => n,
                        None => {
                            let n = format!("kuiper_field_{unnamed}");
                            unnamed += 1;
                            n
                        }
                    };
                    out.push(ProjectItem::Expr { expr: bound, name });
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    // The alias itself is being defined: its own name refers to the column.
                    let key = alias.value.to_lowercase();
                    self.resolving.push(key);
                    let bound = self.expr(expr);
                    self.resolving.pop();
                    out.push(ProjectItem::Expr {
                        expr: bound?,
                        name: alias.value.clone(),
                    });
                }
                SelectItem::ExprWithAliases { expr, .. } => {
                    return Err(CompileError::at("one alias per field", pos_of(expr)));
                }
            }
        }
        Ok(out)
    }

    /// eKuiper's output name of an unaliased field: a column's name, or a function's name.
    fn natural_name(&self, e: &ast::Expr) -> Option<String> {
        match e {
            ast::Expr::Identifier(i) => Some(i.value.clone()),
            ast::Expr::CompoundIdentifier(parts)
                if parts.len() == 2 && self.is_stream_name(&parts[0].value) =>
            {
                Some(parts[1].value.clone())
            }
            ast::Expr::Function(f) => Some(f.name.to_string().to_lowercase()),
            ast::Expr::Nested(inner) => self.natural_name(inner),
            _ => None,
        }
    }

    fn expr(&mut self, e: &ast::Expr) -> Result<Expr> {
        let pos = pos_of(e);
        Ok(match e {
            ast::Expr::Identifier(ident) => self.column(ident)?,
            ast::Expr::CompoundIdentifier(parts) => {
                let (first, rest) = parts.split_first().expect("compound identifier has parts");
                let mut base = if rest.is_empty() {
                    self.column(first)?
                } else if self.is_stream_name(&first.value)
                    && self.field(&first.value, None).is_err()
                {
                    // `demo.a`: the stream qualifier, then the column.
                    let col = &rest[0];
                    let mut base = self.column(col)?;
                    for p in &rest[1..] {
                        base = Expr::Field {
                            base: Box::new(base),
                            name: p.value.clone(),
                        };
                    }
                    return Ok(base);
                } else {
                    self.column(first)?
                };
                for p in rest {
                    base = Expr::Field {
                        base: Box::new(base),
                        name: p.value.clone(),
                    };
                }
                base
            }
            ast::Expr::CompoundFieldAccess { root, access_chain } => {
                let mut base = self.expr(root)?;
                for access in access_chain {
                    base = self.access(base, access)?;
                }
                base
            }
            ast::Expr::Nested(inner) => self.expr(inner)?,
            ast::Expr::Value(v) => Expr::Literal(literal(&v.value, pos)?),
            ast::Expr::UnaryOp { op, expr } => match op {
                UnaryOperator::Not => Expr::Not(Box::new(self.expr(expr)?)),
                UnaryOperator::Plus => self.expr(expr)?,
                UnaryOperator::Minus => match self.expr(expr)? {
                    Expr::Literal(Literal::Int(i)) => Expr::Literal(Literal::Int(i.wrapping_neg())),
                    Expr::Literal(Literal::Float(f)) => Expr::Literal(Literal::Float(-f)),
                    other => Expr::Negate(Box::new(other)),
                },
                other => {
                    return Err(CompileError::at(
                        format!("unsupported operator \"{other}\""),
                        pos,
                    ));
                }
            },
            ast::Expr::BinaryOp { left, op, right } => {
                if *op == ast::BinaryOperator::Arrow {
                    let base = self.expr(left)?;
                    return self.arrow_path(base, right);
                }
                let op = binary_op(op).ok_or_else(|| {
                    CompileError::at(format!("unsupported operator \"{op}\""), pos)
                })?;
                let l = self.expr(left)?;
                let r = self.expr(right)?;
                check_operands(op, &l, &r, pos)?;
                Expr::Binary {
                    op,
                    left: Box::new(l),
                    right: Box::new(r),
                }
            }
            ast::Expr::IsNull(inner) => Expr::IsNull {
                expr: Box::new(self.expr(inner)?),
                negated: false,
            },
            ast::Expr::IsNotNull(inner) => Expr::IsNull {
                expr: Box::new(self.expr(inner)?),
                negated: true,
            },
            ast::Expr::In {
                expr,
                target: ast::InTarget::List(list),
                negated,
                ..
            } => Expr::InList {
                expr: Box::new(self.expr(expr)?),
                list: list.iter().map(|e| self.expr(e)).collect::<Result<_>>()?,
                negated: *negated,
            },
            ast::Expr::Between {
                expr,
                negated,
                low,
                high,
            } => Expr::Between {
                expr: Box::new(self.expr(expr)?),
                low: Box::new(self.expr(low)?),
                high: Box::new(self.expr(high)?),
                negated: *negated,
            },
            ast::Expr::Like {
                negated,
                any: false,
                expr,
                pattern,
                escape_char: None,
            } => Expr::Like {
                expr: Box::new(self.expr(expr)?),
                pattern: Box::new(self.expr(pattern)?),
                negated: *negated,
            },
            ast::Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => Expr::Case {
                operand: operand
                    .as_ref()
                    .map(|o| self.expr(o).map(Box::new))
                    .transpose()?,
                branches: conditions
                    .iter()
                    .map(|c| Ok((self.expr(&c.condition)?, self.expr(&c.result)?)))
                    .collect::<Result<_>>()?,
                otherwise: else_result
                    .as_ref()
                    .map(|o| self.expr(o).map(Box::new))
                    .transpose()?,
            },
            ast::Expr::Function(f) => self.function(f)?,
            other => {
                return Err(CompileError::at(
                    format!("unsupported expression \"{other}\""),
                    pos,
                ));
            }
        })
    }

    fn access(&mut self, base: Expr, access: &AccessExpr) -> Result<Expr> {
        Ok(match access {
            AccessExpr::Dot(ast::Expr::Identifier(i)) => Expr::Field {
                base: Box::new(base),
                name: i.value.clone(),
            },
            AccessExpr::Dot(other) => {
                return Err(CompileError::at(
                    format!("expected a field name after \".\", found \"{other}\""),
                    pos_of(other),
                ));
            }
            AccessExpr::Subscript(Subscript::Index { index }) => Expr::Index {
                base: Box::new(base),
                index: Box::new(self.expr(index)?),
            },
            AccessExpr::Subscript(Subscript::Slice {
                lower_bound,
                upper_bound,
                stride,
            }) => {
                if let Some(s) = stride {
                    return Err(CompileError::at("slices take no stride", pos_of(s)));
                }
                Expr::Slice {
                    base: Box::new(base),
                    start: lower_bound
                        .as_ref()
                        .map(|e| self.expr(e).map(Box::new))
                        .transpose()?,
                    end: upper_bound
                        .as_ref()
                        .map(|e| self.expr(e).map(Box::new))
                        .transpose()?,
                }
            }
        })
    }

    /// The right side of `->`: a key, a dotted path, or a key followed by subscripts.
    fn arrow_path(&mut self, base: Expr, right: &ast::Expr) -> Result<Expr> {
        match right {
            ast::Expr::Identifier(i) => Ok(Expr::Field {
                base: Box::new(base),
                name: i.value.clone(),
            }),
            ast::Expr::CompoundIdentifier(parts) => {
                Ok(parts.iter().fold(base, |b, p| Expr::Field {
                    base: Box::new(b),
                    name: p.value.clone(),
                }))
            }
            ast::Expr::CompoundFieldAccess { root, access_chain } => {
                let mut b = self.arrow_path(base, root)?;
                for a in access_chain {
                    b = self.access(b, a)?;
                }
                Ok(b)
            }
            // `a -> b -> c` re-associated by sqlparser as `a -> (b -> c)` in some shapes.
            ast::Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::Arrow,
                right: r2,
            } => {
                let b = self.arrow_path(base, left)?;
                self.arrow_path(b, r2)
            }
            ast::Expr::Nested(inner) => self.arrow_path(base, inner),
            other => Err(CompileError::at(
                format!("expected a key after \"->\", found \"{other}\""),
                pos_of(other),
            )),
        }
    }

    fn function(&mut self, f: &ast::Function) -> Result<Expr> {
        let pos = pos_of(&f.name);
        let name = f.name.to_string().to_lowercase();
        if f.over.is_some() || f.filter.is_some() {
            return Err(CompileError::at(
                format!("OVER and FILTER on \"{name}\" are not supported yet"),
                pos,
            ));
        }
        let args: Vec<&FunctionArg> = match &f.args {
            FunctionArguments::None => Vec::new(),
            FunctionArguments::List(list) => list.args.iter().collect(),
            FunctionArguments::Subquery(q) => {
                return Err(CompileError::at(
                    "subqueries are not supported",
                    pos_of(q.as_ref()),
                ));
            }
        };
        if name == "meta" {
            return meta_key(&args, pos);
        }
        if AGGREGATES.contains(&name.as_str()) {
            return Err(CompileError::at(
                format!(
                    "aggregate function \"{name}\" needs GROUP BY with a window, which is not supported yet"
                ),
                pos,
            ));
        }
        let Some(func) = self.registry.get(&name).cloned() else {
            return Err(
                CompileError::at(format!("unknown function \"{name}\""), pos)
                    .with_hint(did_you_mean(&name, self.registry.names())),
            );
        };
        let mut bound = Vec::with_capacity(args.len());
        for a in args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => bound.push(self.expr(e)?),
                other => {
                    return Err(CompileError::at(
                        format!("unsupported argument \"{other}\" to \"{name}\""),
                        pos_of(other),
                    ));
                }
            }
        }
        let infos: Vec<ArgInfo> = bound.iter().map(ArgInfo::of).collect();
        func.return_type(&infos)
            .map_err(|reason| CompileError::at(format!("function \"{name}\" {reason}"), pos))?;
        Ok(Expr::Call { func, args: bound })
    }
}

fn meta_key(args: &[&FunctionArg], pos: Option<Pos>) -> Result<Expr> {
    let key = match args {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Identifier(i)))] => i.value.clone(),
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Value(v)))] => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    if key.is_empty() {
        return Err(CompileError::at(
            "function \"meta\" expects a meta reference such as meta(topic)",
            pos,
        ));
    }
    Ok(Expr::Meta(key))
}

fn literal(v: &Value, pos: Option<Pos>) -> Result<Literal> {
    Ok(match v {
        Value::Number(n, _) => match n.parse::<i64>() {
            Ok(i) => Literal::Int(i),
            Err(_) => Literal::Float(
                n.parse::<f64>()
                    .map_err(|_| CompileError::at(format!("invalid number \"{n}\""), pos))?,
            ),
        },
        Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Literal::String(s.clone()),
        Value::Boolean(b) => Literal::Bool(*b),
        Value::Null => Literal::Null,
        other => {
            return Err(CompileError::at(
                format!("unsupported literal {other}"),
                pos,
            ));
        }
    })
}

fn binary_op(op: &ast::BinaryOperator) -> Option<BinaryOp> {
    use ast::BinaryOperator as B;
    Some(match op {
        B::Plus => BinaryOp::Add,
        B::Minus => BinaryOp::Sub,
        B::Multiply => BinaryOp::Mul,
        B::Divide => BinaryOp::Div,
        B::Modulo => BinaryOp::Mod,
        B::BitwiseAnd => BinaryOp::BitAnd,
        B::BitwiseOr => BinaryOp::BitOr,
        B::BitwiseXor => BinaryOp::BitXor,
        B::Eq => BinaryOp::Eq,
        B::NotEq => BinaryOp::NotEq,
        B::Lt => BinaryOp::Lt,
        B::LtEq => BinaryOp::LtEq,
        B::Gt => BinaryOp::Gt,
        B::GtEq => BinaryOp::GtEq,
        B::And => BinaryOp::And,
        B::Or => BinaryOp::Or,
        _ => return None,
    })
}

/// Plan-time type check of an operator whose operand types are both known.
fn check_operands(op: BinaryOp, l: &Expr, r: &Expr, pos: Option<Pos>) -> Result<()> {
    use arrow::datatypes::DataType;
    let (SqlType::Known(lt), SqlType::Known(rt)) = (l.sql_type(), r.sql_type()) else {
        return Ok(());
    };
    if lt == DataType::Null || rt == DataType::Null {
        return Ok(());
    }
    let num = |t: &DataType| crate::types::is_numeric(t);
    let ok = if op.is_arithmetic() {
        num(&lt) && num(&rt)
    } else if op.is_bitwise() {
        lt.is_integer() && rt.is_integer()
    } else if op.is_comparison() {
        (num(&lt) && num(&rt))
            || lt == rt
            || matches!((&lt, &rt), (DataType::Timestamp(..), t) | (t, DataType::Timestamp(..)) if t.is_integer())
    } else {
        lt == DataType::Boolean && rt == DataType::Boolean
    };
    if ok {
        Ok(())
    } else {
        Err(CompileError::at(
            format!(
                "invalid operation {} {} {}",
                crate::types::type_name(&lt),
                op.symbol(),
                crate::types::type_name(&rt)
            ),
            pos,
        ))
    }
}
