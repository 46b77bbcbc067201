//! Transform functions: encode, decode, compress, decompress, trunc, chr, hex2dec, dec2hex,
//! to_seconds.

use std::io::{Read, Write};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::DataType;
use base64::Engine as _;

use super::{
    ArgInfo, FunctionDoc, Kind, Registry, ScalarFunction, arrays, check_arity, check_kind,
    float_at, int_at, numeric_args, shape,
};
use crate::eval::{Columnar, EvalContext, Literal, describe_value, present};
use crate::types::SqlType;

pub(super) fn register(r: &mut Registry) {
    r.register(Arc::new(Encode));
    r.register(Arc::new(Decode));
    r.register(Arc::new(Compress));
    r.register(Arc::new(Decompress));
    r.register(Arc::new(Trunc));
    r.register(Arc::new(Chr));
    r.register(Arc::new(Hex2Dec));
    r.register(Arc::new(Dec2Hex));
    r.register(Arc::new(ToSeconds));
}

const CODECS: &[&str] = &["base64"];
const COMPRESSIONS: &[&str] = &["zlib", "gzip", "flate", "zstd"];

/// Checks that argument 2 is a literal naming one of `allowed`.
fn method_of(arg: &ArgInfo, allowed: &[&'static str]) -> Result<&'static str, String> {
    let bad = || {
        format!(
            "expects one of the following values for the 2nd parameter: {}",
            allowed.join(", ")
        )
    };
    match &arg.literal {
        Some(Literal::String(s)) => allowed
            .iter()
            .find(|m| m.eq_ignore_ascii_case(s))
            .copied()
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// The method name passed at run time (always a literal, checked at plan time).
fn runtime_method(args: &[Columnar], name: &str) -> Result<String, String> {
    match args.get(1).and_then(|a| a.array().as_string_opt::<i32>()) {
        Some(s) if s.is_valid(0) => Ok(s.value(0).to_ascii_lowercase()),
        _ => Err(format!("{name} method must be a string")),
    }
}

/// Maps every present row through `f`; absent rows stay null and an `Err` fails the row.
fn map_rows<T>(
    arr: &ArrayRef,
    ctx: &mut EvalContext,
    mut f: impl FnMut(usize) -> Result<T, String>,
) -> Vec<Option<T>> {
    (0..arr.len())
        .map(|row| {
            if !present(arr.as_ref(), row) {
                return None;
            }
            match f(row) {
                Ok(v) => Some(v),
                Err(why) => {
                    ctx.errors.flag(row, || why);
                    None
                }
            }
        })
        .collect()
}

/// The raw bytes of a value: a bytea as is, anything else as its UTF-8 text.
fn bytes_of(arr: &ArrayRef, text: Option<&StringArray>, row: usize) -> Vec<u8> {
    match (arr.data_type(), text) {
        (DataType::Binary, _) => arr.as_binary::<i32>().value(row).to_vec(),
        (_, Some(t)) => t.value(row).as_bytes().to_vec(),
        _ => Vec::new(),
    }
}

/// The text of a non-bytea column, for [`bytes_of`].
fn text_of(arr: &ArrayRef) -> Result<Option<StringArray>, String> {
    if arr.data_type() == &DataType::Binary {
        Ok(None)
    } else {
        super::string::to_text(arr).map(Some)
    }
}

/// An integer value of a numeric row; a float must be whole.
fn wrong(name: &str, want: &str, arr: &ArrayRef, row: usize) -> String {
    format!(
        "{name} expects {want} but got {}",
        describe_value(arr.as_ref(), row)
    )
}

#[derive(Debug)]
struct Encode;
impl ScalarFunction for Encode {
    fn name(&self) -> &'static str {
        "encode"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "conversion",
            syntax: "encode(x, \"base64\")",
            description: "the base64 text of a string (its UTF-8 bytes) or of a bytea",
            example: "encode(\"hello\", \"base64\") = \"aGVsbG8=\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 2)?;
        method_of(&args[1], CODECS)?;
        Ok(SqlType::Known(DataType::Utf8))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        runtime_method(args, "encode")?;
        let arr = arrays(&args[..1], ctx).remove(0);
        let text = text_of(&arr)?;
        let out =
            map_rows(&arr, ctx, |row| {
                Ok(base64::engine::general_purpose::STANDARD.encode(bytes_of(
                    &arr,
                    text.as_ref(),
                    row,
                )))
            });
        Ok(shape(&args[..1], Arc::new(StringArray::from(out))))
    }
}

#[derive(Debug)]
struct Decode;
impl ScalarFunction for Decode {
    fn name(&self) -> &'static str {
        "decode"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "conversion",
            syntax: "decode(s, \"base64\")",
            description: "the string whose UTF-8 bytes s encodes in base64; invalid base64 or non-UTF-8 content fails the row",
            example: "decode(\"aGVsbG8=\", \"base64\") = \"hello\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 2)?;
        check_kind(args, 0, Kind::String)?;
        method_of(&args[1], CODECS)?;
        Ok(SqlType::Known(DataType::Utf8))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        runtime_method(args, "decode")?;
        let arr = arrays(&args[..1], ctx).remove(0);
        let text = text_of(&arr)?;
        let out = map_rows(&arr, ctx, |row| {
            let raw = bytes_of(&arr, text.as_ref(), row);
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(raw.trim_ascii())
                .map_err(|e| {
                    format!(
                        "decode cannot decode {} as base64: {e}",
                        describe_value(arr.as_ref(), row)
                    )
                })?;
            String::from_utf8(bytes).map_err(|_| {
                format!(
                    "decode result of {} is not valid UTF-8 text",
                    describe_value(arr.as_ref(), row)
                )
            })
        });
        Ok(shape(&args[..1], Arc::new(StringArray::from(out))))
    }
}

fn compress_bytes(method: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    let err = |e: std::io::Error| format!("compress failed: {e}");
    match method {
        "zlib" => {
            let mut enc = ZlibEncoder::new(Vec::new(), Compression::default());
            enc.write_all(data).map_err(err)?;
            enc.finish().map_err(err)
        }
        "gzip" => {
            let mut enc = GzEncoder::new(Vec::new(), Compression::default());
            enc.write_all(data).map_err(err)?;
            enc.finish().map_err(err)
        }
        "flate" => {
            let mut enc = DeflateEncoder::new(Vec::new(), Compression::default());
            enc.write_all(data).map_err(err)?;
            enc.finish().map_err(err)
        }
        // One frame at ruzstd's fastest level (about zstd level 1), with a content checksum.
        "zstd" => Ok(ruzstd::encoding::compress_to_vec(
            data,
            ruzstd::encoding::CompressionLevel::Fastest,
        )),
        other => Err(format!("unsupported compression method \"{other}\"")),
    }
}

/// Largest decompressed value: a tiny payload can expand enormously (a compression bomb), and
/// memory must stay bounded, so larger results fail the row instead.
const MAX_DECOMPRESSED: u64 = 64 * 1024 * 1024;

fn decompress_bytes(method: &str, data: &[u8]) -> std::io::Result<Vec<u8>> {
    use flate2::read::{DeflateDecoder, GzDecoder, ZlibDecoder};
    let mut out = Vec::new();
    let limit = MAX_DECOMPRESSED + 1;
    match method {
        "zlib" => ZlibDecoder::new(data).take(limit).read_to_end(&mut out)?,
        "gzip" => GzDecoder::new(data).take(limit).read_to_end(&mut out)?,
        "flate" => DeflateDecoder::new(data)
            .take(limit)
            .read_to_end(&mut out)?,
        "zstd" => zstd_decompress(data, &mut out)?,
        other => {
            return Err(std::io::Error::other(format!(
                "unsupported compression method \"{other}\""
            )));
        }
    };
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(std::io::Error::other(format!(
            "decompressed value exceeds {} MiB",
            MAX_DECOMPRESSED / (1024 * 1024)
        )));
    }
    Ok(out)
}

/// Decodes every zstd frame of `data` in turn (skippable frames are passed over), appending at
/// most [`MAX_DECOMPRESSED`] + 1 bytes to `out`. The decoder refuses frames whose window is
/// larger than the cap, so a hostile header cannot make it reserve more memory either.
fn zstd_decompress(mut data: &[u8], out: &mut Vec<u8>) -> std::io::Result<usize> {
    use ruzstd::decoding::StreamingDecoder;
    let start = out.len();
    let limit = MAX_DECOMPRESSED + 1;
    let bad = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    while !data.is_empty() && ((out.len() - start) as u64) < limit {
        // Skippable frame: 4-byte magic 0x184D2A5?, 4-byte little-endian length, payload.
        if data.len() >= 8 && data[..4] != [0x28, 0xB5, 0x2F, 0xFD] {
            let magic = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
                let len = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
                data = data
                    .get(8 + len..)
                    .ok_or_else(|| bad(&"truncated skippable frame"))?;
                continue;
            }
        }
        let remaining = limit - (out.len() - start) as u64;
        let decoder = StreamingDecoder::new_with_max_window_size(&mut data, MAX_DECOMPRESSED)
            .map_err(|e| bad(&e))?;
        decoder.take(remaining).read_to_end(out)?;
    }
    Ok(out.len() - start)
}

#[derive(Debug)]
struct Compress;
impl ScalarFunction for Compress {
    fn name(&self) -> &'static str {
        "compress"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "conversion",
            syntax: "compress(x, \"zlib\"|\"gzip\"|\"flate\"|\"zstd\")",
            description: "the bytes of a string (UTF-8) or bytea compressed with the named method, as a bytea",
            example: "cast(decompress(compress(\"hi\", \"gzip\"), \"gzip\"), \"string\") = \"hi\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 2)?;
        method_of(&args[1], COMPRESSIONS)?;
        Ok(SqlType::Known(DataType::Binary))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let method = runtime_method(args, "compress")?;
        let arr = arrays(&args[..1], ctx).remove(0);
        let text = text_of(&arr)?;
        let out = map_rows(&arr, ctx, |row| {
            compress_bytes(&method, &bytes_of(&arr, text.as_ref(), row))
        });
        let out: BinaryArray = out.iter().map(|v| v.as_deref()).collect();
        Ok(shape(&args[..1], Arc::new(out)))
    }
}

#[derive(Debug)]
struct Decompress;
impl ScalarFunction for Decompress {
    fn name(&self) -> &'static str {
        "decompress"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "conversion",
            syntax: "decompress(x, \"zlib\"|\"gzip\"|\"flate\"|\"zstd\")",
            description: "a bytea (or a base64 string of one) decompressed with the named method, as a bytea; data that is not valid for the method, or that decompresses to more than 64 MiB, fails the row",
            example: "cast(decompress(compress(\"hi\", \"zlib\"), \"zlib\"), \"string\") = \"hi\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 2)?;
        method_of(&args[1], COMPRESSIONS)?;
        Ok(SqlType::Known(DataType::Binary))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let method = runtime_method(args, "decompress")?;
        let arr = arrays(&args[..1], ctx).remove(0);
        let out = map_rows(&arr, ctx, |row| {
            let data = match arr.data_type() {
                DataType::Binary => arr.as_binary::<i32>().value(row).to_vec(),
                DataType::Utf8 => base64::engine::general_purpose::STANDARD
                    .decode(arr.as_string::<i32>().value(row).trim())
                    .map_err(|_| wrong("decompress", "a bytea or base64 string", &arr, row))?,
                _ => return Err(wrong("decompress", "a bytea", &arr, row)),
            };
            decompress_bytes(&method, &data)
                .map_err(|e| format!("decompress cannot decompress the value as {method}: {e}"))
        });
        let out: BinaryArray = out.iter().map(|v| v.as_deref()).collect();
        Ok(shape(&args[..1], Arc::new(out)))
    }
}

#[derive(Debug)]
struct Trunc;
impl ScalarFunction for Trunc {
    fn name(&self) -> &'static str {
        "trunc"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "conversion",
            syntax: "trunc(x, digits)",
            description: "x cut (not rounded) to the given number of decimal places, as a FLOAT",
            example: "trunc(3.1459, 2) = 3.14",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 2)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arrs = arrays(args, ctx);
        let (x, d) = (&arrs[0], &arrs[1]);
        let out = map_rows(x, ctx, |row| {
            let v = float_at(x, row).ok_or_else(|| wrong("trunc", "a number", x, row))?;
            if !present(d.as_ref(), row) {
                return Ok(None);
            }
            let digits = int_at(d, row)
                .ok_or_else(|| wrong("trunc", "an integer number of digits", d, row))?;
            let f = 10f64.powi(digits.clamp(-400, 400) as i32);
            let t = (v * f).trunc() / f;
            Ok(Some(if t.is_finite() { t } else { v.trunc() }))
        });
        let out: Float64Array = out.into_iter().map(Option::flatten).collect();
        Ok(shape(args, Arc::new(out)))
    }
}

#[derive(Debug)]
struct Chr;
impl ScalarFunction for Chr {
    fn name(&self) -> &'static str {
        "chr"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "conversion",
            syntax: "chr(x)",
            description: "the character whose Unicode code point is the integer x; for a string, its first character",
            example: "chr(65) = \"A\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        Ok(SqlType::Known(DataType::Utf8))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = arrays(args, ctx).remove(0);
        let out = map_rows(&arr, ctx, |row| {
            if arr.data_type() == &DataType::Utf8 {
                let s = arr.as_string::<i32>().value(row);
                return s
                    .chars()
                    .next()
                    .map(String::from)
                    .ok_or_else(|| "chr expects a non-empty string".to_string());
            }
            let n = int_at(&arr, row).ok_or_else(|| wrong("chr", "an integer", &arr, row))?;
            u32::try_from(n)
                .ok()
                .and_then(char::from_u32)
                .map(String::from)
                .ok_or_else(|| format!("chr: {n} is not a valid Unicode code point"))
        });
        Ok(shape(args, Arc::new(StringArray::from(out))))
    }
}

#[derive(Debug)]
struct Hex2Dec;
impl ScalarFunction for Hex2Dec {
    fn name(&self) -> &'static str {
        "hex2dec"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "conversion",
            syntax: "hex2dec(s)",
            description: "the BIGINT value of a hexadecimal string, with or without a 0x prefix",
            example: "hex2dec(\"0xff\") = 255",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        check_kind(args, 0, Kind::String)?;
        Ok(SqlType::Known(DataType::Int64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = arrays(args, ctx).remove(0);
        let out = map_rows(&arr, ctx, |row| {
            let bad = || wrong("hex2dec", "a hexadecimal string", &arr, row);
            if arr.data_type() != &DataType::Utf8 {
                return Err(bad());
            }
            let s = arr.as_string::<i32>().value(row).trim();
            let (neg, body) = match s.strip_prefix('-') {
                Some(b) => (true, b),
                None => (false, s),
            };
            let body = body
                .strip_prefix("0x")
                .or_else(|| body.strip_prefix("0X"))
                .unwrap_or(body);
            if body.is_empty() || body.starts_with(['+', '-']) {
                return Err(bad());
            }
            let v = i64::from_str_radix(body, 16).map_err(|_| bad())?;
            Ok(if neg { -v } else { v })
        });
        Ok(shape(args, Arc::new(Int64Array::from(out))))
    }
}

#[derive(Debug)]
struct Dec2Hex;
impl ScalarFunction for Dec2Hex {
    fn name(&self) -> &'static str {
        "dec2hex"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "conversion",
            syntax: "dec2hex(n)",
            description: "the integer n as a lowercase hexadecimal string with a 0x prefix",
            example: "dec2hex(255) = \"0xff\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 1)?;
        Ok(SqlType::Known(DataType::Utf8))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = arrays(args, ctx).remove(0);
        let out = map_rows(&arr, ctx, |row| {
            let n = int_at(&arr, row).ok_or_else(|| wrong("dec2hex", "an integer", &arr, row))?;
            Ok(if n < 0 {
                format!("-0x{:x}", n.unsigned_abs())
            } else {
                format!("0x{n:x}")
            })
        });
        Ok(shape(args, Arc::new(StringArray::from(out))))
    }
}

#[derive(Debug)]
struct ToSeconds;
impl ScalarFunction for ToSeconds {
    fn name(&self) -> &'static str {
        "to_seconds"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "conversion",
            syntax: "to_seconds(t)",
            description: "the whole seconds since the Unix epoch of a datetime, an epoch-milliseconds number or an RFC 3339 string",
            example: "to_seconds(1700000000123) = 1700000000",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        Ok(SqlType::Known(DataType::Int64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = arrays(args, ctx).remove(0);
        let out = map_rows(&arr, ctx, |row| {
            let ms = super::datetime::millis_at(&arr, row).ok().flatten();
            ms.map(|ms| ms.div_euclid(1000))
                .ok_or_else(|| wrong("to_seconds", "a datetime", &arr, row))
        });
        Ok(shape(args, Arc::new(Int64Array::from(out))))
    }
}

#[cfg(test)]
mod tests {
    use super::{compress_bytes, decompress_bytes};

    #[test]
    fn compression_round_trips() {
        for m in ["zlib", "gzip", "flate", "zstd"] {
            let c = compress_bytes(m, b"hello hello hello").unwrap();
            assert_eq!(decompress_bytes(m, &c).unwrap(), b"hello hello hello");
        }
        assert!(decompress_bytes("gzip", b"not gzip").is_err());
        assert!(decompress_bytes("zstd", b"not zstd").is_err());
    }

    #[test]
    fn zstd_reads_concatenated_and_skippable_frames() {
        let mut data = compress_bytes("zstd", b"hello ").unwrap();
        // A skippable frame between the two data frames.
        data.extend_from_slice(&[0x50, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        data.extend(compress_bytes("zstd", b"world").unwrap());
        assert_eq!(decompress_bytes("zstd", &data).unwrap(), b"hello world");
        assert_eq!(
            decompress_bytes("zstd", &compress_bytes("zstd", b"").unwrap()).unwrap(),
            b""
        );
    }

    #[test]
    fn zstd_output_is_capped() {
        let big = vec![b'a'; (super::MAX_DECOMPRESSED + 10) as usize];
        let c = compress_bytes("zstd", &big).unwrap();
        assert!(c.len() < big.len() / 100);
        let err = decompress_bytes("zstd", &c).unwrap_err();
        assert!(err.to_string().contains("64 MiB"), "{err}");
    }
}
