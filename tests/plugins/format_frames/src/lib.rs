//! `frames`: a custom format for a device's binary frames, as a gateway receives them. Message
//! type `Reading` is 8 bytes of id (i64, little endian), 8 bytes of temperature (f64, little
//! endian), then the device name in UTF-8. `decode` makes one row of `id BIGINT, temperature
//! FLOAT, device STRING`; `encode` writes a frame per row from those fields.

use std::sync::Arc;

use quiver_plugin_abi::sdk::arrow::array::{
    Array, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use quiver_plugin_abi::sdk::arrow::compute::cast;
use quiver_plugin_abi::sdk::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use quiver_plugin_abi::sdk::{Converter, Error};

struct Reading;

impl Converter for Reading {
    fn decode(&self, payload: &[u8]) -> Result<RecordBatch, Error> {
        if payload.len() < 16 {
            return Err(format!("a Reading frame has at least 16 bytes, got {}", payload.len()).into());
        }
        let id = i64::from_le_bytes(payload[..8].try_into()?);
        let temperature = f64::from_le_bytes(payload[8..16].try_into()?);
        let device = std::str::from_utf8(&payload[16..])?;
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("temperature", DataType::Float64, true),
            Field::new("device", DataType::Utf8, true),
        ]);
        Ok(RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![id])),
                Arc::new(Float64Array::from(vec![temperature])),
                Arc::new(StringArray::from(vec![device])),
            ],
        )?)
    }

    fn encode(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, Error> {
        let column = |name: &str, t: &DataType| -> Result<Arc<dyn Array>, Error> {
            let c = batch
                .column_by_name(name)
                .ok_or_else(|| format!("a Reading needs field \"{name}\""))?;
            Ok(cast(c, t)?)
        };
        let id = column("id", &DataType::Int64)?;
        let temperature = column("temperature", &DataType::Float64)?;
        let device = column("device", &DataType::Utf8)?;
        let (id, temperature, device) = (
            id.as_primitive::<Int64Type>(),
            temperature.as_primitive::<Float64Type>(),
            device.as_string::<i32>(),
        );
        Ok((0..batch.num_rows())
            .map(|r| {
                let mut frame = Vec::with_capacity(16 + device.value(r).len());
                frame.extend_from_slice(&id.value(r).to_le_bytes());
                frame.extend_from_slice(&temperature.value(r).to_le_bytes());
                frame.extend_from_slice(device.value(r).as_bytes());
                frame
            })
            .collect())
    }
}

quiver_plugin_abi::export_converter! {
    version: "1.0.0",
    factory: |message: &str| match message {
        "Reading" => Ok(Reading),
        other => Err(format!("unknown message type \"{other}\"; this library knows Reading").into()),
    },
}
