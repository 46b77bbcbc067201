//! The compressions of the file connector: `compression` on the sink, `decompression` on the
//! source (eKuiper's names: gzip and zstd).

use std::io::{BufRead, BufReader, Read};

use ruzstd::decoding::{FrameDecoder, StreamingDecoder};

use crate::ConnectorError;
use crate::props::Props;

/// How a file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain text.
    None,
    /// gzip members (the sink writes one per chunk of lines).
    Gzip,
    /// zstd frames (the sink writes one per chunk of lines).
    Zstd,
}

/// Read buffer in front of a decompressor.
const READ_BUFFER: usize = 256 * 1024;

impl Compression {
    /// Reads property `key` (`compression` or `decompression`): empty or absent is none.
    pub(crate) fn parse(p: &Props<'_>, key: &str) -> Result<Compression, ConnectorError> {
        match p.string(key)?.map(str::trim).unwrap_or("") {
            "" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            other => Err(p.error(format!("unknown {key} \"{other}\"; expected gzip or zstd"))),
        }
    }

    /// The file extensions this compression's files usually carry, without the dot.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            Compression::None => &[],
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
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(
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
