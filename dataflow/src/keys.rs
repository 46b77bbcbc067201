//! Row keys as text: the one encoding that table rows, join keys and lookups match by.

use arrow::array::{Array, ArrayRef};
use quiver_compiler::aggregate::json_value;

/// A key as text: each value's JSON, so 1 and 1.0 match (both print `1`); `None` when a key
/// value is missing (null never matches).
pub(crate) fn keys_of(arrays: &[ArrayRef], rows: usize) -> Vec<Option<String>> {
    (0..rows)
        .map(|r| {
            let mut key = String::new();
            for a in arrays {
                if !push_key_text(&mut key, a.as_ref(), r)? {
                    key.push_str(&json_value(a.as_ref(), r)?.to_string());
                }
                key.push('\u{1f}');
            }
            Some(key)
        })
        .collect()
}

/// Appends the JSON text of a string value that needs no escaping (the usual key), as
/// `json_value(..).to_string()` would write it, without building a JSON value: `Some(true)`
/// when written, `Some(false)` when the caller must take the general path, `None` for null.
fn push_key_text(key: &mut String, a: &dyn Array, r: usize) -> Option<bool> {
    if a.is_null(r) {
        return None;
    }
    let Some(s) = a.as_any().downcast_ref::<arrow::array::StringArray>() else {
        return Some(false);
    };
    let v = s.value(r);
    if v.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        return Some(false);
    }
    key.push('"');
    key.push_str(v);
    key.push('"');
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn string_keys_read_like_their_json_text() {
        let values = [
            "dev-1",
            "",
            "quote\"d",
            "back\\slash",
            "tab\there",
            "ünï©ødé",
        ];
        let strings: ArrayRef = Arc::new(arrow::array::StringArray::from(
            values
                .iter()
                .map(|v| Some(*v))
                .chain([None])
                .collect::<Vec<_>>(),
        ));
        let keys = keys_of(&[strings], values.len() + 1);
        for (v, k) in values.iter().zip(&keys) {
            let json = serde_json::Value::String(v.to_string()).to_string();
            assert_eq!(k.as_deref(), Some(format!("{json}\u{1f}").as_str()));
        }
        assert_eq!(keys[values.len()], None, "a null key matches nothing");
    }

    #[test]
    fn numbers_match_whatever_their_type() {
        let int: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![1, 2]));
        let float: ArrayRef = Arc::new(arrow::array::Float64Array::from(vec![1.0, 2.5]));
        assert_eq!(
            keys_of(&[int], 2),
            [Some("1\u{1f}".to_string()), Some("2\u{1f}".to_string())]
        );
        assert_eq!(
            keys_of(&[float], 2),
            [Some("1\u{1f}".to_string()), Some("2.5\u{1f}".to_string())]
        );
    }

    #[test]
    fn a_key_of_several_columns_needs_every_value() {
        let k: ArrayRef = Arc::new(arrow::array::StringArray::from(vec!["a", "a"]));
        let v: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![Some(1), None]));
        assert_eq!(
            keys_of(&[k, v], 2),
            [Some("\"a\"\u{1f}1\u{1f}".to_string()), None]
        );
    }
}
