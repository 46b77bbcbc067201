//! Hashing functions: md5, sha1, sha256, sha384, sha512 and crc32, each over the UTF-8 text of
//! its argument and returned as a lowercase hex string.

use std::fmt::Write;
use std::sync::Arc;

use arrow::array::StringArray;
use arrow::datatypes::DataType;
use sha2::Digest;

use super::string::to_text;
use super::{
    ArgInfo, FunctionDoc, Kind, Registry, ScalarFunction, arrays, check_arity, check_kind, shape,
};
use crate::eval::{Columnar, EvalContext, Literal};
use crate::types::SqlType;

pub(super) fn register(r: &mut Registry) {
    r.register(Arc::new(Md5));
    r.register(Arc::new(Sha1));
    r.register(Arc::new(Sha256));
    r.register(Arc::new(Sha384));
    r.register(Arc::new(Sha512));
    r.register(Arc::new(Crc32));
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The hex digest of `text` under hash `D`.
fn digest_hex<D: Digest>(text: &str) -> String {
    hex(&D::digest(text.as_bytes()))
}

/// One string argument (a literal number or boolean is rejected, as eKuiper does).
fn hash_result(args: &[ArgInfo]) -> Result<SqlType, String> {
    check_arity(args, 1, 1)?;
    if matches!(
        args[0].literal,
        Some(Literal::Int(_) | Literal::Float(_) | Literal::Bool(_))
    ) {
        check_kind(args, 0, Kind::String)?;
    }
    Ok(SqlType::Known(DataType::Utf8))
}

/// Hashes the text of each row with `f`; null stays null.
fn hash_text(
    args: &[Columnar],
    ctx: &EvalContext,
    f: impl Fn(&str) -> String,
) -> Result<Columnar, String> {
    let arr = arrays(args, ctx).remove(0);
    let text = to_text(&arr)?;
    let out: StringArray = text.iter().map(|v| v.map(&f)).collect();
    Ok(shape(args, Arc::new(out)))
}

#[derive(Debug)]
struct Md5;
impl ScalarFunction for Md5 {
    fn name(&self) -> &'static str {
        "md5"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "hashing",
            syntax: "md5(s)",
            description: "the MD5 digest of s as lowercase hex",
            example: "md5(\"a\") = \"0cc175b9c0f1b6a831c399e269772661\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        hash_result(args)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        hash_text(args, ctx, digest_hex::<md5::Md5>)
    }
}

#[derive(Debug)]
struct Sha1;
impl ScalarFunction for Sha1 {
    fn name(&self) -> &'static str {
        "sha1"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "hashing",
            syntax: "sha1(s)",
            description: "the SHA-1 digest of s as lowercase hex",
            example: "sha1(\"a\") = \"86f7e437faa5a7fce15d1ddcb9eaeaea377667b8\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        hash_result(args)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        hash_text(args, ctx, digest_hex::<sha1::Sha1>)
    }
}

#[derive(Debug)]
struct Sha256;
impl ScalarFunction for Sha256 {
    fn name(&self) -> &'static str {
        "sha256"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "hashing",
            syntax: "sha256(s)",
            description: "the SHA-256 digest of s as lowercase hex",
            example: "sha256(\"a\") = \"ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        hash_result(args)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        hash_text(args, ctx, digest_hex::<sha2::Sha256>)
    }
}

#[derive(Debug)]
struct Sha384;
impl ScalarFunction for Sha384 {
    fn name(&self) -> &'static str {
        "sha384"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "hashing",
            syntax: "sha384(s)",
            description: "the SHA-384 digest of s as lowercase hex",
            example: "sha384(\"a\") = \"54a59b9f22b0b80880d8427e548b7c23abd873486e1f035dce9cd697e85175033caa88e6d57bc35efae0b5afd3145f31\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        hash_result(args)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        hash_text(args, ctx, digest_hex::<sha2::Sha384>)
    }
}

#[derive(Debug)]
struct Sha512;
impl ScalarFunction for Sha512 {
    fn name(&self) -> &'static str {
        "sha512"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "hashing",
            syntax: "sha512(s)",
            description: "the SHA-512 digest of s as lowercase hex",
            example: "sha512(\"a\") = \"1f40fc92da241694750979ee6cf582f2d5d7d28e18335de05abc54d0560e0f5302860c652bf08d560252aa5e74210546f369fbbbce8c12cfc7957b2652fe9a75\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        hash_result(args)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        hash_text(args, ctx, digest_hex::<sha2::Sha512>)
    }
}

#[derive(Debug)]
struct Crc32;
impl ScalarFunction for Crc32 {
    fn name(&self) -> &'static str {
        "crc32"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "hashing",
            syntax: "crc32(s)",
            description: "the IEEE CRC-32 checksum of s as lowercase hex (Go's %x: no leading zeros)",
            example: "crc32(\"a\") = \"e8b7be43\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        hash_result(args)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        hash_text(args, ctx, |s| {
            format!("{:x}", crc32fast::hash(s.as_bytes()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: &dyn ScalarFunction, v: &str) -> String {
        let arg = Literal::String(v.to_string()).to_scalar();
        let mut ctx = EvalContext::new(1);
        let out = f.invoke(&[arg], &mut ctx).unwrap();
        arrow::array::AsArray::as_string::<i32>(out.array().as_ref())
            .value(0)
            .to_string()
    }

    #[test]
    fn digests_are_lowercase_hex() {
        assert_eq!(run(&Md5, ""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(run(&Sha1, "a"), "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8");
        assert_eq!(run(&Sha256, "a").len(), 64);
        assert_eq!(run(&Sha384, "a").len(), 96);
        assert_eq!(run(&Sha512, "a").len(), 128);
    }

    #[test]
    fn crc32_is_ieee_without_padding() {
        assert_eq!(run(&Crc32, "a"), "e8b7be43");
        assert_eq!(run(&Crc32, ""), "0");
    }
}
