//! eKuiper's compressions (`internal/compressor/`): `zlib`, `gzip`, `flate` (raw deflate) and
//! `zstd`, for `compression` on byte sinks, `decompression` on message sources, and the file
//! connector's files (gzip and zstd, one member or frame per chunk).
//!
//! A message is compressed whole ([`Compression::compress`]); reading goes through a stream
//! ([`Compression::reader`]) so a large payload or file is never held twice, and a payload made
//! of several gzip members or zstd frames reads back whole.

use std::io::{BufRead, BufReader, Read, Write};

use ruzstd::decoding::{FrameDecoder, StreamingDecoder};

use crate::ConnectorError;
use crate::props::Props;

/// How a file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain text.
    None,
    /// zlib (RFC 1950).
    Zlib,
    /// gzip members (the file sink writes one per chunk of lines).
    Gzip,
    /// Raw deflate (RFC 1951), eKuiper's `flate`.
    Flate,
    /// zstd frames (the file sink writes one per chunk of lines).
    Zstd,
}

/// Every compression by its eKuiper name.
pub const COMPRESSIONS: &[(&str, Compression)] = &[
    ("zlib", Compression::Zlib),
    ("gzip", Compression::Gzip),
    ("flate", Compression::Flate),
    ("zstd", Compression::Zstd),
];

/// Read buffer in front of a decompressor.
const READ_BUFFER: usize = 256 * 1024;

impl Compression {
    /// The HTTP `Content-Encoding` token of a body compressed this way. HTTP's `deflate` is the
    /// zlib format (RFC 9110, 8.4.1.2), so zlib sends `deflate`; raw deflate (eKuiper's
    /// `flate`) has no token, and a receiver told `deflate` would fail on it, so none is sent.
    pub fn http_content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None | Compression::Flate => None,
            Compression::Zlib => Some("deflate"),
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }

    /// Reads property `key` (`compression` or `decompression`), one of `allowed` (the file
    /// connector takes gzip and zstd, whose chunks concatenate): empty or absent is none.
    pub(crate) fn parse(
        p: &Props<'_>,
        key: &str,
        allowed: &[Compression],
    ) -> Result<Compression, ConnectorError> {
        let name = p.string(key)?.map(str::trim).unwrap_or("");
        if name.is_empty() {
            return Ok(Compression::None);
        }
        let names: Vec<&str> = COMPRESSIONS
            .iter()
            .filter(|(_, c)| allowed.contains(c))
            .map(|(n, _)| *n)
            .collect();
        COMPRESSIONS
            .iter()
            .find(|(n, c)| n.eq_ignore_ascii_case(name) && allowed.contains(c))
            .map(|(_, c)| *c)
            .ok_or_else(|| {
                p.error(format!(
                    "unknown {key} \"{name}\"; expected {}",
                    names.join(", ")
                ))
            })
    }

    /// The compression eKuiper names `name` (`zlib`, `gzip`, `flate`, `zstd`; empty: none).
    pub fn named(name: &str) -> Result<Compression, String> {
        let name = name.trim();
        if name.is_empty() {
            return Ok(Compression::None);
        }
        COMPRESSIONS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, c)| *c)
            .ok_or_else(|| {
                format!("unknown compression \"{name}\"; expected zlib, gzip, flate or zstd")
            })
    }

    /// `data` compressed as one zlib stream, gzip member, deflate stream or zstd frame.
    pub fn compress(self, data: &[u8]) -> Vec<u8> {
        fn finish<W: Write>(mut w: W, data: &[u8]) -> W {
            w.write_all(data).expect("writing to memory");
            w
        }
        let level = flate2::Compression::default();
        let out = Vec::with_capacity(data.len() / 4 + 16);
        match self {
            Compression::None => data.to_vec(),
            Compression::Zlib => finish(flate2::write::ZlibEncoder::new(out, level), data)
                .finish()
                .expect("writing to memory"),
            Compression::Gzip => finish(flate2::write::GzEncoder::new(out, level), data)
                .finish()
                .expect("writing to memory"),
            Compression::Flate => finish(flate2::write::DeflateEncoder::new(out, level), data)
                .finish()
                .expect("writing to memory"),
            Compression::Zstd => {
                ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
            }
        }
    }

    /// `data` decompressed whole; the error says why it is not valid data of this kind.
    pub fn decompress(self, data: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(data.len() * 4);
        self.reader(std::io::Cursor::new(data.to_vec()))?
            .read_to_end(&mut out)
            .map_err(|e| format!("invalid {} data: {e}", self.name()))?;
        Ok(out)
    }

    /// eKuiper's name of this compression.
    pub fn name(self) -> &'static str {
        COMPRESSIONS
            .iter()
            .find(|(_, c)| *c == self)
            .map_or("none", |(n, _)| n)
    }

    /// The file extensions this compression's files usually carry, without the dot.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            Compression::None => &[],
            Compression::Zlib => &["zz", "zlib"],
            Compression::Flate => &["deflate"],
            Compression::Gzip => &["gz", "gzip"],
            Compression::Zstd => &["zst", "zstd"],
        }
    }

    /// `input` decompressed as a stream: every gzip member or zstd frame in turn, so a file
    /// the sink wrote (one member or frame per chunk) reads back whole.
    pub fn reader<R: Read + Send + 'static>(
        self,
        input: R,
    ) -> Result<Box<dyn Read + Send>, String> {
        Ok(match self {
            Compression::None => Box::new(input),
            Compression::Zlib => Box::new(flate2::bufread::ZlibDecoder::new(
                BufReader::with_capacity(READ_BUFFER, input),
            )),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(
                BufReader::with_capacity(READ_BUFFER, input),
            )),
            Compression::Flate => Box::new(flate2::bufread::DeflateDecoder::new(
                BufReader::with_capacity(READ_BUFFER, input),
            )),
            Compression::Zstd => Box::new(ZstdFrames::new(BufReader::with_capacity(
                READ_BUFFER,
                input,
            ))?),
        })
    }
}

/// Reads consecutive zstd frames as one stream (ruzstd's decoder stops after one frame).
struct ZstdFrames<R: BufRead> {
    frame: Option<StreamingDecoder<R, FrameDecoder>>,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(input: R) -> Result<Self, String> {
        let frame = StreamingDecoder::new(input).map_err(|e| format!("not zstd data: {e}"))?;
        Ok(ZstdFrames { frame: Some(frame) })
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let Some(frame) = self.frame.as_mut() else {
                return Ok(0);
            };
            let n = frame.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // This frame is done: the next one starts where it ended, if any bytes remain.
            let (mut input, decoder) = self.frame.take().expect("frame").into_parts();
            if input.fill_buf()?.is_empty() {
                return Ok(0);
            }
            let next = StreamingDecoder::new_with_decoder(input, decoder)
                .map_err(|e| std::io::Error::other(format!("bad zstd frame: {e}")))?;
            self.frame = Some(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(c: Compression, bytes: Vec<u8>) -> String {
        let mut out = String::new();
        c.reader(std::io::Cursor::new(bytes))
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn reads_every_gzip_member_and_zstd_frame() {
        let mut gz = Vec::new();
        for part in ["a\n", "b\n"] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part.as_bytes()).unwrap();
            gz.extend(e.finish().unwrap());
        }
        assert_eq!(read_all(Compression::Gzip, gz), "a\nb\n");
        let mut zs = Vec::new();
        for part in ["c\n", "d\n"] {
            zs.extend(ruzstd::encoding::compress_to_vec(
                part.as_bytes(),
                ruzstd::encoding::CompressionLevel::Fastest,
            ));
        }
        assert_eq!(read_all(Compression::Zstd, zs), "c\nd\n");
    }

    #[test]
    fn every_compression_round_trips_a_message() {
        let text = b"device,temperature\na,21.5\n".repeat(20);
        for (name, c) in COMPRESSIONS {
            let packed = c.compress(&text);
            assert_ne!(packed, text, "{name}");
            assert_eq!(c.decompress(&packed).unwrap(), text, "{name}");
            assert_eq!(Compression::named(name), Ok(*c));
        }
        assert!(
            Compression::named("lz4")
                .unwrap_err()
                .contains("expected zlib")
        );
        assert!(Compression::Zlib.decompress(b"plain").is_err());
        assert!(Compression::Flate.decompress(b"\xff\xff plain").is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        let r = Compression::Gzip
            .reader(std::io::Cursor::new(b"plain text".to_vec()))
            .unwrap()
            .read_to_end(&mut out);
        assert!(r.is_err());
        assert!(
            Compression::Zstd
                .reader(std::io::Cursor::new(b"plain text".to_vec()))
                .is_err()
        );
    }
}
