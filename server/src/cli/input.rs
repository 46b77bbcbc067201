//! Local input: definitions given inline or with `-f FILE` (`-f -` reads standard input), and
//! files written by exports. Reads are bounded: nothing larger than the server takes in one
//! request is read.

use std::io::Read;
use std::path::Path;

use quiver_server::api::limits::MAX_BODY_BYTES;

use crate::error::{CliError, usage};

/// The bytes of the regular file `path` (standard input for `-`), at most `limit`; `what`
/// names the option in errors.
pub fn read_file(path: &Path, limit: usize, what: &str) -> Result<Vec<u8>, CliError> {
    let shown = path.display();
    let cannot = |e: std::io::Error| usage(format!("{what} {shown}: {e}"));
    let mut data = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(limit as u64 + 1)
            .read_to_end(&mut data)
            .map_err(cannot)?;
    } else {
        // A FIFO or device could block or never end: only regular files.
        if !std::fs::metadata(path).map_err(cannot)?.is_file() {
            return Err(usage(format!("{what} {shown}: not a regular file")));
        }
        std::fs::File::open(path)
            .and_then(|f| f.take(limit as u64 + 1).read_to_end(&mut data))
            .map_err(cannot)?;
    }
    if data.len() > limit {
        return Err(usage(format!(
            "{what} {shown}: larger than {limit} bytes, more than one request may carry"
        )));
    }
    Ok(data)
}

/// The UTF-8 text of `-f FILE`, at most the server's request body limit.
pub fn read_text(path: &Path) -> Result<String, CliError> {
    let data = read_file(path, MAX_BODY_BYTES, "-f")?;
    String::from_utf8(data).map_err(|_| usage(format!("-f {}: not UTF-8 text", path.display())))
}

/// The definition given inline or with `-f FILE`, not both; `None` for neither.
pub fn definition(inline: Option<String>, file: Option<&Path>) -> Result<Option<String>, CliError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(usage(
            "give the definition inline or with -f FILE, not both",
        )),
        (Some(text), None) => Ok(Some(text)),
        (None, Some(path)) => read_text(path).map(Some),
        (None, None) => Ok(None),
    }
}

/// Writes `data` to `path` (standard output for `-`).
pub fn write_file(path: &Path, data: &[u8]) -> Result<(), CliError> {
    let result = if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        std::io::Write::write_all(&mut out, data).and_then(|()| std::io::Write::flush(&mut out))
    } else {
        std::fs::write(path, data)
    };
    result.map_err(|e| usage(format!("writing {}: {e}", path.display())))
}
