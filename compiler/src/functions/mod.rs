//! The function registry: every SQL function with its signature check and its vectorised
//! implementation side by side, one concept per file (`math`, `string`, `null`, `context`...).
//! A function's [`FunctionDoc::category`] is its section of the reference (docs/functions.md,
//! eKuiper's sections), so `null`'s and `context`'s functions are listed under "other".
//!
//! Aggregates, analytic and window functions are bound by the binder itself; their files here
//! hold only their documentation, so the catalogue lists every function.
//!
//! Plugin UDFs enter through the same [`ScalarFunction`] trait, so the binder cannot tell a
//! built-in from a plugin function.

mod aggregate;
mod analytic;
mod array;
mod context;
mod conversion;
mod datetime;
mod hashing;
mod json;
mod math;
mod null;
mod object;
mod passthrough;
mod state;
mod string;
mod transform;
mod window;

pub use datetime::{event_millis, format_zoned, millis_at, parse_with_pattern};
pub(crate) use json::{json_to_array, value_to_json};
pub use state::{KeyedStateStore, set_keyed_state_store};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::DataType;

use crate::eval::{Columnar, EvalContext, Literal, describe_value};
use crate::types::{SqlType, type_name};

/// Documentation of a function, used for generated references and error hints.
#[derive(Debug, Clone, Copy)]
pub struct FunctionDoc {
    /// Category, e.g. `math`.
    pub category: &'static str,
    /// Call syntax, e.g. `round(x[, digits])`.
    pub syntax: &'static str,
    /// One sentence on what it returns.
    pub description: &'static str,
    /// An example call and its result.
    pub example: &'static str,
}

impl FunctionDoc {
    /// A documentation entry (for the tables of functions the binder answers itself).
    pub const fn new(
        category: &'static str,
        syntax: &'static str,
        description: &'static str,
        example: &'static str,
    ) -> Self {
        FunctionDoc {
            category,
            syntax,
            description,
            example,
        }
    }
}

/// What the binder knows about an argument at plan time ([`ArgInfo::of`] builds it from a
/// bound expression).
#[derive(Debug, Clone)]
pub struct ArgInfo {
    /// Its type (Any for schemaless data).
    pub ty: SqlType,
    /// Its value, when the argument is a literal.
    pub literal: Option<Literal>,
}

/// A scalar SQL function: one value out per row in.
pub trait ScalarFunction: Send + Sync + fmt::Debug {
    /// The name rules call it by (lowercase).
    fn name(&self) -> &'static str;

    /// Its documentation.
    fn doc(&self) -> FunctionDoc;

    /// Checks the arguments at plan time and returns the result type. The error is the plain
    /// reason (the binder adds the position), e.g. `expects 1 argument but got 2`.
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String>;

    /// Evaluates the function over a batch. Per-row failures are flagged in `ctx.errors`.
    /// For an aggregate function the batch is one group's values and the first value of the
    /// result is the group's.
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String>;

    /// True for an aggregate function (a plugin's): the binder treats calls as aggregates.
    fn is_aggregate(&self) -> bool {
        false
    }
}

/// The set of functions a rule may call.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    functions: BTreeMap<String, Arc<dyn ScalarFunction>>,
}

impl Registry {
    /// The built-in functions.
    pub fn builtin() -> &'static Registry {
        static BUILTIN: OnceLock<Registry> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            let mut r = Registry::default();
            math::register(&mut r);
            array::register(&mut r);
            string::register(&mut r);
            conversion::register(&mut r);
            null::register(&mut r);
            datetime::register(&mut r);
            hashing::register(&mut r);
            state::register(&mut r);
            json::register(&mut r);
            object::register(&mut r);
            transform::register(&mut r);
            passthrough::register(&mut r);
            context::register(&mut r);
            r
        })
    }

    /// Adds (or replaces) a function; used for aliases and plugin UDFs.
    pub fn register(&mut self, f: Arc<dyn ScalarFunction>) {
        self.functions.insert(f.name().to_string(), f);
    }

    /// Removes a function (a plugin UDF being uninstalled); true when it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        self.functions.remove(&name.to_ascii_lowercase()).is_some()
    }

    /// Adds a function under another name (eKuiper's aliases such as `power` for `pow`).
    pub fn alias(&mut self, alias: &str, target: &str) {
        if let Some(f) = self.functions.get(target).cloned() {
            self.functions.insert(alias.to_string(), f);
        }
    }

    /// Looks a function up, ignoring case.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn ScalarFunction>> {
        self.functions.get(&name.to_ascii_lowercase())
    }

    /// All names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.functions.keys().map(String::as_str)
    }

    /// Every function with the names it answers to (aliases after the canonical name), sorted
    /// by category and name.
    pub fn catalogue(&self) -> Vec<(FunctionDoc, Vec<String>)> {
        let mut by_fn: BTreeMap<(&'static str, &'static str), (FunctionDoc, Vec<String>)> =
            BTreeMap::new();
        for (name, f) in &self.functions {
            let doc = f.doc();
            let entry = by_fn
                .entry((doc.category, f.name()))
                .or_insert_with(|| (doc, Vec::new()));
            entry.1.push(name.clone());
        }
        // Aggregates, analytic and window functions live in the binder, not the registry.
        let binder_docs = [
            aggregate::BINDER_DOCS,
            analytic::BINDER_DOCS,
            window::BINDER_DOCS,
            context::BINDER_DOCS,
            array::BINDER_DOCS,
            object::BINDER_DOCS,
        ];
        for (name, doc) in binder_docs.into_iter().flatten() {
            by_fn
                .entry((doc.category, name))
                .or_insert_with(|| (*doc, vec![name.to_string()]));
        }
        by_fn
            .into_iter()
            .map(|((_, canonical), (doc, mut names))| {
                // The canonical name first, then aliases alphabetically.
                names.sort_by_key(|n| (n != canonical, n.clone()));
                (doc, names)
            })
            .collect()
    }

    /// The function reference as Markdown (docs/functions.md is generated from this).
    pub fn reference_markdown(&self) -> String {
        let mut out = String::from(
            "# Function reference\n\nGenerated from the function registry \
             (`compiler/src/functions/`); do not edit by hand. Regenerate with\n\
             `QUIVER_REGENERATE_DOCS=1 cargo test -p quiver-compiler --test functions_doc`.\n",
        );
        let mut category = "";
        for (doc, names) in self.catalogue() {
            if doc.category != category {
                category = doc.category;
                out.push_str(&format!(
                    "\n## {category}\n\n| function | description | example |\n|---|---|---|\n"
                ));
            }
            let aliases = if names.len() > 1 {
                format!(" (also {})", names[1..].join(", "))
            } else {
                String::new()
            };
            out.push_str(&format!(
                "| `{}`{aliases} | {} | `{}` |\n",
                doc.syntax.replace('|', "\\|"),
                doc.description.replace('|', "\\|"),
                doc.example.replace('|', "\\|"),
            ));
        }
        out
    }
}

/// Checks the argument count against `min..=max`.
pub fn check_arity(args: &[ArgInfo], min: usize, max: usize) -> Result<(), String> {
    let n = args.len();
    if (min..=max).contains(&n) {
        return Ok(());
    }
    let expected = if min == max {
        format!("{min} argument{}", if min == 1 { "" } else { "s" })
    } else if max == usize::MAX {
        format!("at least {min} argument{}", if min == 1 { "" } else { "s" })
    } else {
        format!("{min} to {max} arguments")
    };
    Err(format!("expects {expected} but got {n}"))
}

/// Checks that there are exactly `n` arguments and that every one is a number (when its type
/// is known): the signature of most math functions.
pub fn numeric_args(args: &[ArgInfo], n: usize) -> Result<(), String> {
    check_arity(args, n, n)?;
    (0..n).try_for_each(|i| check_kind(args, i, Kind::Number))
}

/// What a parameter accepts, for plan-time checks on known types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// BIGINT or FLOAT.
    Number,
    /// STRING.
    String,
    /// Anything.
    Any,
}

/// Checks argument `i` against `kind` when its type is known.
pub fn check_kind(args: &[ArgInfo], i: usize, kind: Kind) -> Result<(), String> {
    let Some(SqlType::Known(t)) = args.get(i).map(|a| &a.ty) else {
        return Ok(());
    };
    let ok = match kind {
        Kind::Number => crate::types::is_numeric(t) || *t == DataType::Null,
        Kind::String => matches!(t, DataType::Utf8 | DataType::Null),
        Kind::Any => true,
    };
    if ok {
        Ok(())
    } else {
        let want = match kind {
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::Any => "a value",
        };
        Err(format!(
            "expects {want} for argument {} but got {}",
            i + 1,
            type_name(t)
        ))
    }
}

/// Flags every present row of `arr` with a type error for function `name`.
pub(crate) fn flag_type_error(name: &str, want: &str, arr: &ArrayRef, ctx: &mut EvalContext) {
    for row in 0..arr.len().min(ctx.rows) {
        if crate::eval::present(arr.as_ref(), row) {
            ctx.errors.flag(row, || {
                format!(
                    "{name} expects {want} but got {}",
                    describe_value(arr.as_ref(), row)
                )
            });
        }
    }
}

/// Row `row` of a numeric column as FLOAT; `None` for other types. Int64 and Float64 (what
/// decoded JSON holds) are read directly; other widths fall back to a one-row cast.
pub(crate) fn float_at(arr: &ArrayRef, row: usize) -> Option<f64> {
    use arrow::array::AsArray;
    use arrow::datatypes::{Float64Type, Int64Type};
    match arr.data_type() {
        DataType::Float64 => Some(arr.as_primitive::<Float64Type>().value(row)),
        DataType::Int64 => Some(arr.as_primitive::<Int64Type>().value(row) as f64),
        t if t.is_integer() || t.is_floating() => {
            arrow::compute::cast(&arr.slice(row, 1), &DataType::Float64)
                .ok()
                .map(|a| a.as_primitive::<Float64Type>().value(0))
        }
        _ => None,
    }
}

/// Row `row` of a numeric column as BIGINT; floats only when they are whole numbers.
pub(crate) fn int_at(arr: &ArrayRef, row: usize) -> Option<i64> {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    match arr.data_type() {
        DataType::Int64 => Some(arr.as_primitive::<Int64Type>().value(row)),
        t if t.is_integer() => arrow::compute::cast(&arr.slice(row, 1), &DataType::Int64)
            .ok()
            .map(|a| a.as_primitive::<Int64Type>().value(0)),
        t if t.is_floating() => float_at(arr, row)
            .filter(|f| f.is_finite() && *f == f.trunc() && f.abs() < 9.2e18)
            .map(|f| f as i64),
        _ => None,
    }
}

/// Keeps a result scalar when every argument was scalar (constant folding for free).
pub(crate) fn shape(args: &[Columnar], out: ArrayRef) -> Columnar {
    if !args.is_empty() && args.iter().all(Columnar::is_scalar) {
        Columnar::Scalar(out)
    } else {
        Columnar::Array(out)
    }
}

/// Broadcasts every argument to a full column when any is a column.
pub(crate) fn arrays(args: &[Columnar], ctx: &EvalContext) -> Vec<ArrayRef> {
    let len = if args.iter().all(Columnar::is_scalar) {
        1
    } else {
        ctx.rows
    };
    args.iter().map(|a| a.clone().into_array(len)).collect()
}

/// Formats a value the way eKuiper prints it in strings: whole floats without `.0`.
pub(crate) fn format_float(v: f64) -> String {
    if v.is_finite() && v == v.trunc() && v.abs() < 1e21 {
        format!("{}", v as i128)
    } else {
        format!("{v}")
    }
}
