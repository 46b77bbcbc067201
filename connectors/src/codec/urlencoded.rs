//! eKuiper's `urlencoded` format: a message is `key=value&key=value` (form encoding: `+` is a
//! space, `%XX` a byte), one row with a field per key.
//!
//! A stream with a schema reads the keys it names (others are dropped, missing ones are null)
//! and types them as `text_columns.rs` casts; a repeated key fills an ARRAY(STRING)
//! column, and is an error for any other. A schemaless stream gets a STRING field per key, in
//! the order the keys first appear, or an ARRAY(STRING) for a key repeated in the message, as
//! eKuiper gives a list for it; messages that differ in which keys repeat decode into separate
//! batches, each with its own types.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::json::{Decoded, with_meta};
use super::text_columns::{Text, TextColumns};
use crate::RawMessage;

/// Decodes urlencoded messages for one stream.
#[derive(Debug, Clone)]
pub struct UrlencodedDecoder {
    schema: Option<SchemaRef>,
    with_topic: bool,
}

/// One message's keys, in order, each with its values.
type Pairs<'a> = Vec<(Cow<'a, str>, Vec<Cow<'a, str>>)>;

impl UrlencodedDecoder {
    /// A decoder into `schema`'s columns (None: a column per key).
    pub fn new(schema: Option<SchemaRef>, with_topic: bool) -> Self {
        UrlencodedDecoder { schema, with_topic }
    }

    /// Decodes `messages`, one row each; a message that does not cast costs its own row.
    pub fn decode(&self, messages: &[RawMessage]) -> Decoded {
        let parsed: Vec<Pairs<'_>> = messages.iter().map(|m| pairs(&m.payload)).collect();
        let mut out = Decoded::default();
        match &self.schema {
            Some(schema) => {
                let all: Vec<usize> = (0..messages.len()).collect();
                self.group(schema.clone(), &all, messages, &parsed, &mut out);
            }
            None => {
                // Grouped by which keys repeat, so each group has one type per key.
                let mut groups: Vec<(Vec<&str>, Vec<usize>)> = Vec::new();
                for (i, p) in parsed.iter().enumerate() {
                    let lists: Vec<&str> = p
                        .iter()
                        .filter(|(_, v)| v.len() > 1)
                        .map(|(k, _)| k.as_ref())
                        .collect();
                    match groups.iter_mut().find(|(l, _)| *l == lists) {
                        Some((_, members)) => members.push(i),
                        None => groups.push((lists, vec![i])),
                    }
                }
                for (lists, members) in &groups {
                    let mut names: Vec<&str> = Vec::new();
                    for &i in members {
                        for (k, _) in &parsed[i] {
                            if !names.contains(&k.as_ref()) {
                                names.push(k);
                            }
                        }
                    }
                    let schema = Arc::new(Schema::new(
                        names
                            .iter()
                            .map(|n| {
                                let t = if lists.contains(n) {
                                    DataType::List(Arc::new(Field::new(
                                        "item",
                                        DataType::Utf8,
                                        true,
                                    )))
                                } else {
                                    DataType::Utf8
                                };
                                Field::new(*n, t, true)
                            })
                            .collect::<Vec<_>>(),
                    ));
                    self.group(schema, members, messages, &parsed, &mut out);
                }
            }
        }
        out
    }

    /// Decodes messages `members` into one batch of `schema`.
    fn group(
        &self,
        schema: SchemaRef,
        members: &[usize],
        messages: &[RawMessage],
        parsed: &[Pairs<'_>],
        out: &mut Decoded,
    ) {
        let index: HashMap<&str, usize> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name().as_str(), i))
            .collect();
        let mut columns = TextColumns::new(schema.clone(), members.len());
        let mut decoded = Vec::with_capacity(members.len());
        for &m in members {
            let mut values: Vec<Option<Text<'_>>> = vec![None; schema.fields().len()];
            for (k, v) in &parsed[m] {
                if let Some(&i) = index.get(k.as_ref()) {
                    values[i] = Some(match v.as_slice() {
                        [one] => Text::One(one),
                        many => Text::Many(many.iter().map(|s| s.as_ref()).collect()),
                    });
                }
            }
            match columns.push(&values) {
                Ok(()) => decoded.push(messages[m].clone()),
                Err(e) => out.errors.push(format!("error in preprocessor: {e}")),
            }
        }
        if decoded.is_empty() {
            return;
        }
        let rows = columns.rows();
        let mut batch = columns.finish();
        if self.with_topic {
            batch = with_meta(batch, &decoded, &vec![1; rows]);
        }
        out.batches.push(batch);
    }
}

/// The keys of a form-encoded payload with their values (a line end ending it is dropped).
fn pairs(payload: &[u8]) -> Pairs<'_> {
    let payload = payload.strip_suffix(b"\n").unwrap_or(payload);
    let payload = payload.strip_suffix(b"\r").unwrap_or(payload);
    let mut out: Pairs<'_> = Vec::new();
    for (k, v) in form_urlencoded::parse(payload) {
        match out.iter_mut().find(|(key, _)| *key == k) {
            Some((_, values)) => values.push(v),
            None => out.push((k, vec![v])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;

    fn msg(s: &str) -> RawMessage {
        RawMessage::new(s.as_bytes().to_vec(), "t/1".into())
    }

    #[test]
    fn schema_keys_typed_with_escapes_and_bad_values_counted() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let d = UrlencodedDecoder::new(Some(schema), false);
        let out = d.decode(&[
            msg("id=1&name=a+b%21&other=x"),
            msg("id=one"),
            msg("name=c"),
            msg("id=2&id=3"),
        ]);
        assert_eq!(out.errors.len(), 2, "{:?}", out.errors);
        assert!(out.errors[0].contains("cannot convert string(one) to bigint"));
        let b = &out.batches[0];
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.column(0).as_primitive::<Int64Type>().value(0), 1);
        assert!(b.column(0).is_null(1));
        assert_eq!(b.column(1).as_string::<i32>().value(0), "a b!");
    }

    #[test]
    fn schemaless_keys_are_strings_and_repeated_keys_lists() {
        let d = UrlencodedDecoder::new(None, true);
        let out = d.decode(&[msg("a=1&b=x"), msg("a=2&a=3"), msg("c=4")]);
        assert!(out.errors.is_empty());
        assert_eq!(out.batches.len(), 2);
        let first = &out.batches[0];
        let names: Vec<String> = first
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["a", "b", "c", "__meta_topic"]);
        assert_eq!(first.num_rows(), 2);
        let lists = out.batches[1].column(0).as_list::<i32>();
        assert_eq!(lists.value(0).as_string::<i32>().value(1), "3");
    }
}
