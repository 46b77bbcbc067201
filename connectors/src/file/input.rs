//! Which files the file source reads, and what it does with a file once read
//! (`actionAfterRead`).

use std::path::{Path, PathBuf};

use super::config::{AfterRead, FileSourceConfig};
use super::reader::io_error;
use crate::ConnectorError;

/// The input: the file itself, or a directory's regular files in name order (as eKuiper reads
/// folders).
///
/// A source that deletes or moves what it read and reads again every `interval` watches its
/// path: a missing file or an empty directory is then an empty round, not a failure, so
/// files dropped in later are read on the next round.
pub fn input_files(config: &FileSourceConfig) -> Result<Vec<PathBuf>, ConnectorError> {
    // In a cluster, the files the leader listed (`listing.rs`).
    if let Some(agreed) = &config.agreed {
        return Ok(agreed.files());
    }
    let path = &config.path;
    let watching = config.interval.is_some() && config.after_read != AfterRead::Keep;
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if watching && e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(format!("cannot open \"{}\": {e}", path.display()))),
    };
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| io_error(format!("cannot list \"{}\": {e}", path.display())))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| io_error(format!("cannot list \"{}\": {e}", path.display())))?;
        let p = entry.path();
        // Follows symlinks, so a link to a file counts as a file.
        if std::fs::metadata(&p).is_ok_and(|m| m.is_file()) {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Applies `actionAfterRead` to `file`, whose rows were all handed to the rule.
pub fn after_read(action: &AfterRead, file: &Path) -> Result<(), ConnectorError> {
    match action {
        AfterRead::Keep => Ok(()),
        AfterRead::Delete => std::fs::remove_file(file).map_err(|e| {
            io_error(format!(
                "cannot delete \"{}\" after reading it: {e}",
                file.display()
            ))
        }),
        AfterRead::MoveTo(dir) => move_into(file, dir).map_err(|e| {
            io_error(format!(
                "cannot move \"{}\" to \"{}\" after reading it: {e}",
                file.display(),
                dir.display()
            ))
        }),
    }
}

/// Moves `file` into `dir` (created if missing) under its own name, replacing a file of that
/// name there. Across file systems, where a rename cannot go, it is copied, synced and then
/// removed, so a crash leaves the file in one place or both, never in neither.
fn move_into(file: &Path, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = file
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let target = dir.join(name);
    match std::fs::rename(file, &target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            std::fs::copy(file, &target)?;
            std::fs::File::open(&target)?.sync_all()?;
            std::fs::remove_file(file)
        }
        Err(e) => Err(e),
    }
}
