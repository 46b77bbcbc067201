//! eKuiper's templates: Go text/template syntax (`{{.field}}`, `{{range .}}`, `{{if}}`) plus
//! eKuiper's `json` function (`{{json .}}`), over JSON values. Used by the host's `dataTemplate`
//! and by connector properties eKuiper lets depend on the row (the rest sink's `url`, ...).

use std::sync::Arc;

use serde_json::Value;

/// A compiled template.
pub struct Template {
    template: gtmpl::Template,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Template")
    }
}

impl Template {
    /// Parses `text`; the error says what is wrong with it.
    pub fn compile(text: &str) -> Result<Template, String> {
        // gtmpl 0.7's lexer spins forever on a text that ends inside an action with a `-`
        // (`{{ .a -`, found by dataflow/tests/template_properties.rs); such a text is an error
        // in Go's text/template anyway, so it is refused before gtmpl sees it.
        if ends_inside_action(text) {
            return Err("unclosed action".to_string());
        }
        let mut template = gtmpl::Template::default();
        template.add_func("json", json_func);
        template.parse(text).map_err(|e| e.to_string())?;
        Ok(Template { template })
    }

    /// True when `text` holds template actions (`{{ ... }}`), so it depends on the data.
    pub fn is_template(text: &str) -> bool {
        text.contains("{{")
    }

    /// Renders the template over `value` (a row object, or the list of rows).
    pub fn render(&self, value: &Value) -> Result<Vec<u8>, String> {
        self.render_string(value).map(String::into_bytes)
    }

    /// [`Template::render`] as text.
    pub fn render_string(&self, value: &Value) -> Result<String, String> {
        let ctx = gtmpl::Context::from(to_gtmpl(value));
        self.template.render(&ctx).map_err(|e| e.to_string())
    }
}

/// A property that is either fixed or a template rendered per row (eKuiper's dynamic
/// properties: a rest sink's `url`, a file sink's `path`).
#[derive(Debug, Clone)]
pub enum TextProp {
    /// The same text for every row.
    Fixed(String),
    /// Rendered over the row; the source text for messages.
    Template(Arc<Template>, String),
}

impl TextProp {
    /// Reads property `name`: a template when it holds `{{`, else fixed text.
    pub fn parse(name: &str, text: &str) -> Result<TextProp, String> {
        if !Template::is_template(text) {
            return Ok(TextProp::Fixed(text.to_string()));
        }
        let t = Template::compile(text)
            .map_err(|e| format!("\"{name}\" is not a valid template: {e}"))?;
        Ok(TextProp::Template(Arc::new(t), text.to_string()))
    }

    /// True when the text depends on the row.
    pub fn is_template(&self) -> bool {
        matches!(self, TextProp::Template(..))
    }

    /// The text for `row`.
    pub fn render(&self, row: &Value) -> Result<String, String> {
        match self {
            TextProp::Fixed(s) => Ok(s.clone()),
            TextProp::Template(t, source) => t
                .render_string(row)
                .map_err(|e| format!("template \"{source}\": {e}")),
        }
    }
}

fn to_gtmpl(v: &Value) -> gtmpl::Value {
    match v {
        Value::Null => gtmpl::Value::Nil,
        Value::Bool(b) => gtmpl::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => gtmpl::Value::from(i),
            (None, Some(f)) => gtmpl::Value::from(f),
            _ => gtmpl::Value::Nil,
        },
        Value::String(s) => gtmpl::Value::String(s.clone()),
        Value::Array(a) => gtmpl::Value::Array(a.iter().map(to_gtmpl).collect()),
        Value::Object(o) => {
            gtmpl::Value::Map(o.iter().map(|(k, v)| (k.clone(), to_gtmpl(v))).collect())
        }
    }
}

fn from_gtmpl(v: &gtmpl::Value) -> Value {
    match v {
        gtmpl::Value::NoValue | gtmpl::Value::Nil | gtmpl::Value::Function(_) => Value::Null,
        gtmpl::Value::Bool(b) => Value::Bool(*b),
        gtmpl::Value::String(s) => Value::String(s.clone()),
        gtmpl::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(f)) => super::encode::float_value(f),
            _ => Value::Null,
        },
        gtmpl::Value::Array(a) => Value::Array(a.iter().map(from_gtmpl).collect()),
        gtmpl::Value::Object(o) | gtmpl::Value::Map(o) => {
            let sorted: std::collections::BTreeMap<_, _> =
                o.iter().map(|(k, v)| (k.clone(), from_gtmpl(v))).collect();
            Value::Object(sorted.into_iter().collect())
        }
    }
}

/// eKuiper's `json` template function: the argument as JSON text.
fn json_func(args: &[gtmpl::Value]) -> Result<gtmpl::Value, gtmpl::FuncError> {
    let v = args.first().map(from_gtmpl).unwrap_or(Value::Null);
    Ok(gtmpl::Value::String(v.to_string()))
}

/// Whether `text` ends inside a `{{ ... }}` action (quoted strings and comments inside an
/// action are skipped, so a `}}` in them does not close it).
fn ends_inside_action(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut inside = false;
    while i < bytes.len() {
        let rest = &bytes[i..];
        if !inside {
            if rest.starts_with(b"{{") {
                inside = true;
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        match rest[0] {
            b'}' if rest.starts_with(b"}}") => {
                inside = false;
                i += 2;
            }
            b'/' if rest.starts_with(b"/*") => {
                let Some(end) = rest[2..].windows(2).position(|w| w == b"*/") else {
                    return true;
                };
                i += 2 + end + 2;
            }
            quote @ (b'"' | b'`' | b'\'') => {
                // To the closing quote; `\` escapes in all but raw (backquoted) strings.
                let mut j = 1;
                while j < rest.len() && rest[j] != quote {
                    j += if quote != b'`' && rest[j] == b'\\' {
                        2
                    } else {
                        1
                    };
                }
                if j >= rest.len() {
                    return true;
                }
                i += j + 1;
            }
            _ => i += 1,
        }
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_fields_ranges_and_json() {
        let t = Template::compile(r#"{"id": "{{.device}}", "t": {{.temperature}}}"#).unwrap();
        let out = t
            .render(&json!({"device": "a", "temperature": 21.5}))
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"id": "a", "t": 21.5}"#);
        let t = Template::compile(r#"{{range .}}{{.device}};{{end}}"#).unwrap();
        let out = t
            .render(&json!([{"device": "a"}, {"device": "b"}]))
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a;b;");
        let t = Template::compile(r#"{{json .}}"#).unwrap();
        let out = t.render(&json!({"b": 2, "a": "x"})).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":"x","b":2}"#);
        assert!(Template::compile("{{.a").is_err());
    }
}
