//! eKuiper's `binary` format: the whole payload is one BYTEA field named `self` (eKuiper's
//! default field name), for images and binary frames that functions then read.

use std::sync::Arc;

use arrow::array::BinaryArray;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::json::{Decoded, with_meta};
use crate::RawMessage;

/// The name of the one field a binary payload decodes to.
pub const SELF_FIELD: &str = "self";

/// Decodes binary messages: a row per message, its bytes in `self`.
#[derive(Debug, Clone)]
pub struct BinaryDecoder {
    schema: SchemaRef,
    with_topic: bool,
}

impl BinaryDecoder {
    /// A decoder adding the metadata columns when `with_topic`.
    pub fn new(with_topic: bool) -> Self {
        BinaryDecoder {
            schema: Arc::new(Schema::new(vec![Field::new(
                SELF_FIELD,
                DataType::Binary,
                true,
            )])),
            with_topic,
        }
    }

    /// Decodes `messages`; every payload is valid.
    pub fn decode(&self, messages: &[RawMessage]) -> Decoded {
        if messages.is_empty() {
            return Decoded::default();
        }
        let bytes: BinaryArray = messages.iter().map(|m| Some(&m.payload[..])).collect();
        let mut batch = RecordBatch::try_new(self.schema.clone(), vec![Arc::new(bytes)])
            .expect("one binary column");
        if self.with_topic {
            batch = with_meta(batch, messages, &vec![1; messages.len()]);
        }
        Decoded {
            batches: vec![batch],
            errors: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;

    #[test]
    fn the_payload_is_self() {
        let m = RawMessage::new(vec![0u8, 255, 10], "img".into());
        let out = BinaryDecoder::new(true).decode(&[m]);
        let b = &out.batches[0];
        assert_eq!(b.schema().field(0).name(), "self");
        assert_eq!(b.column(0).as_binary::<i32>().value(0), &[0u8, 255, 10]);
        assert_eq!(b.column(1).as_string::<i32>().value(0), "img");
    }
}
