//! Plugin packages: fetching a zip (`file://` or `http://`) and checking it before anything
//! touches the plugin folders.
//!
//! eKuiper's layout: every entry at the zip root, one `Name@vX.Y.Z.so` (or `Name.so`), an
//! optional `name.json` metadata file, optionally `name.yaml` and `install.sh`. `install.sh`
//! is never run (it would run arbitrary code as the server's user).

use std::io::{Cursor, Read};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::PluginError;

/// The largest zip we download or read.
pub const MAX_ZIP_BYTES: u64 = 256 << 20;
/// The largest a single unpacked entry may be.
pub const MAX_ENTRY_BYTES: u64 = 512 << 20;
/// At most this many entries in a package.
const MAX_ENTRIES: usize = 16;
/// A download must finish within this.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// A checked package.
#[derive(Debug)]
pub struct Package {
    /// The `.so` entry's file name.
    pub so_name: String,
    /// The version in the `.so` name, if any (`1.0.0` from `Name@v1.0.0.so`).
    pub so_version: Option<String>,
    /// The library's bytes.
    pub so: Vec<u8>,
    /// `name.json`, parsed.
    pub metadata: Option<serde_json::Value>,
    /// `name.yaml` (a source's default properties), checked to be YAML.
    pub defaults: Option<Vec<u8>>,
    /// True when the zip carried an `install.sh`, which was not run.
    pub had_install_script: bool,
}

/// Splits a plugin file name `Name@vX.Y.Z.so` / `name.so` into (name, version).
pub fn parse_so_name(file: &str) -> Option<(String, Option<String>)> {
    let stem = file.strip_suffix(".so")?;
    let (name, version) = match stem.split_once('@') {
        Some((n, v)) => (n, Some(v.strip_prefix('v').unwrap_or(v).to_string())),
        None => (stem, None),
    };
    let valid_name = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let valid_version = version.as_deref().is_none_or(|v| {
        !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    });
    (valid_name && valid_version).then(|| (name.to_string(), version))
}

/// True when `file_name` (a `.so` stem's name part) names plugin `name` (eKuiper accepts
/// `name` and `Name`).
pub fn names_plugin(file_name: &str, name: &str) -> bool {
    file_name == name || file_name == capitalised(name)
}

/// `mysql` → `Mysql`, eKuiper's file and symbol naming.
pub fn capitalised(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// Reads the zip at `url` (`file:///abs/path.zip` or `http://host:port/path.zip`).
pub async fn fetch(url: &str) -> Result<Vec<u8>, PluginError> {
    if let Some(path) = url.strip_prefix("file://") {
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| PluginError::Invalid(format!("cannot read {url}: {e}")))?;
        if meta.len() > MAX_ZIP_BYTES {
            return Err(too_big(url));
        }
        return tokio::fs::read(path)
            .await
            .map_err(|e| PluginError::Invalid(format!("cannot read {url}: {e}")));
    }
    if let Some(rest) = url.strip_prefix("http://") {
        return tokio::time::timeout(DOWNLOAD_TIMEOUT, http_get(url, rest))
            .await
            .map_err(|_| {
                PluginError::Invalid(format!(
                    "downloading {url} took longer than {}s",
                    DOWNLOAD_TIMEOUT.as_secs()
                ))
            })?;
    }
    Err(PluginError::Invalid(format!(
        "unsupported plugin file URL \"{url}\"; use file:///path/plugin.zip or http://host/plugin.zip"
    )))
}

fn too_big(url: &str) -> PluginError {
    PluginError::Invalid(format!(
        "{url} is larger than the {} MiB a plugin package may be",
        MAX_ZIP_BYTES >> 20
    ))
}

/// A minimal HTTP/1.1 GET: enough for a package server (Content-Length, chunked or
/// read-to-close bodies), without pulling an HTTP client and TLS stack into the server.
async fn http_get(url: &str, rest: &str) -> Result<Vec<u8>, PluginError> {
    let fail = |why: String| PluginError::Invalid(format!("cannot download {url}: {why}"));
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: */*\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut raw = Vec::new();
    let mut limited = (&mut stream).take(MAX_ZIP_BYTES + 64 * 1024);
    limited
        .read_to_end(&mut raw)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| fail("no HTTP response".into()))?;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let body = &raw[head_end + 4..];
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(fail(format!("the server answered {status}")));
    }
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body).ok_or_else(|| fail("bad chunked body".into()))?
    } else {
        body.to_vec()
    };
    if body.len() as u64 > MAX_ZIP_BYTES {
        return Err(too_big(url));
    }
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        && len != body.len()
    {
        return Err(fail(format!(
            "got {} of {len} bytes (the connection closed early)",
            body.len()
        )));
    }
    Ok(body)
}

fn dechunk(mut s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = s.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&s[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        s = &s[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(s.get(..size)?);
        s = s.get(size + 2..)?;
    }
}

/// Checks the zip for plugin `name` and takes out its parts. Nothing is written to disk.
pub fn open(bytes: &[u8], name: &str) -> Result<Package, PluginError> {
    let bad = |why: String| PluginError::Invalid(format!("bad plugin package: {why}"));
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| bad(format!("not a zip file ({e})")))?;
    if zip.len() > MAX_ENTRIES {
        return Err(bad(format!(
            "{} entries; a plugin package has at most {MAX_ENTRIES}",
            zip.len()
        )));
    }
    let json_name = format!("{name}.json");
    let yaml_name = format!("{name}.yaml");
    let mut package = Package {
        so_name: String::new(),
        so_version: None,
        so: Vec::new(),
        metadata: None,
        defaults: None,
        had_install_script: false,
    };
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| bad(format!("entry {i} is unreadable ({e})")))?;
        let entry_name = entry
            .name()
            .map_err(|e| bad(format!("entry {i} has an unreadable name ({e})")))?
            .to_string();
        // eKuiper's layout has every file at the root; anything else could write elsewhere.
        if entry_name.contains('/')
            || entry_name.contains('\\')
            || entry_name.contains("..")
            || entry_name.is_empty()
        {
            return Err(bad(format!(
                "entry \"{entry_name}\" is not at the zip root (folders and paths are not allowed)"
            )));
        }
        if entry.is_dir() || entry.is_symlink() {
            return Err(bad(format!("entry \"{entry_name}\" is not a regular file")));
        }
        if entry.size() > MAX_ENTRY_BYTES {
            return Err(bad(format!(
                "entry \"{entry_name}\" unpacks to {} MiB; the limit is {} MiB",
                entry.size() >> 20,
                MAX_ENTRY_BYTES >> 20
            )));
        }
        let read = |entry: &mut zip::read::ZipFile<'_, _>| -> Result<Vec<u8>, PluginError> {
            let mut data = Vec::new();
            // The declared size can lie; never read past the limit.
            entry
                .take(MAX_ENTRY_BYTES + 1)
                .read_to_end(&mut data)
                .map_err(|e| bad(format!("entry \"{entry_name}\" is corrupt ({e})")))?;
            if data.len() as u64 > MAX_ENTRY_BYTES {
                return Err(bad(format!("entry \"{entry_name}\" is too large")));
            }
            Ok(data)
        };
        if entry_name.ends_with(".so") {
            let Some((so_plugin, version)) = parse_so_name(&entry_name) else {
                return Err(bad(format!(
                    "\"{entry_name}\" is not a plugin file name like {}@v1.0.0.so",
                    capitalised(name)
                )));
            };
            if !names_plugin(&so_plugin, name) {
                return Err(bad(format!(
                    "\"{entry_name}\" does not name plugin \"{name}\"; expected {}.so or {}@vX.Y.Z.so",
                    capitalised(name),
                    capitalised(name)
                )));
            }
            if !package.so_name.is_empty() {
                return Err(bad(format!(
                    "two libraries (\"{}\" and \"{entry_name}\"); a package holds one",
                    package.so_name
                )));
            }
            package.so = read(&mut entry)?;
            package.so_name = entry_name;
            package.so_version = version;
        } else if entry_name == json_name {
            let data = read(&mut entry)?;
            let meta: serde_json::Value = serde_json::from_slice(&data)
                .map_err(|e| bad(format!("{json_name} is not valid JSON ({e})")))?;
            package.metadata = Some(meta);
        } else if entry_name == "install.sh" {
            package.had_install_script = true;
        } else if entry_name == yaml_name {
            let data = read(&mut entry)?;
            serde_yaml::from_slice::<serde_yaml::Value>(&data)
                .map_err(|e| bad(format!("{yaml_name} is not valid YAML ({e})")))?;
            package.defaults = Some(data);
        } else {
            return Err(bad(format!(
                "unexpected entry \"{entry_name}\"; a package holds {}@vX.Y.Z.so, {json_name}, {yaml_name} and install.sh",
                capitalised(name)
            )));
        }
    }
    if package.so_name.is_empty() {
        return Err(bad(format!(
            "no library; expected {}@vX.Y.Z.so at the zip root",
            capitalised(name)
        )));
    }
    Ok(package)
}

/// Orders versions like `1.10.0` > `1.9.2` (numeric parts; others compare as text).
pub fn version_key(v: &str) -> Vec<(u64, String)> {
    v.split(['.', '-'])
        .map(|p| (p.parse::<u64>().unwrap_or(0), p.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut out);
        for (name, data) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .expect("start");
            w.write_all(data).expect("write");
        }
        w.finish().expect("finish");
        out.into_inner()
    }

    #[test]
    fn so_names_follow_ekuipers_pattern() {
        assert_eq!(
            parse_so_name("Mysql@v1.0.2.so"),
            Some(("Mysql".into(), Some("1.0.2".into())))
        );
        assert_eq!(parse_so_name("mysql.so"), Some(("mysql".into(), None)));
        assert_eq!(parse_so_name("../x.so"), None);
        assert_eq!(parse_so_name("x.txt"), None);
        assert!(names_plugin("Mysql", "mysql"));
        assert!(!names_plugin("Other", "mysql"));
        assert!(version_key("1.10.0") > version_key("1.9.2"));
    }

    #[test]
    fn a_good_package_opens() {
        let zip = zip_of(&[
            ("Memo@v1.0.0.so", b"ELF"),
            ("memo.json", b"{\"about\": {}}"),
            ("install.sh", b"rm -rf /"),
        ]);
        let p = open(&zip, "memo").expect("valid");
        assert_eq!(p.so_name, "Memo@v1.0.0.so");
        assert_eq!(p.so_version.as_deref(), Some("1.0.0"));
        assert_eq!(p.so, b"ELF");
        assert!(p.had_install_script);
        assert!(p.metadata.is_some());
    }

    #[test]
    fn bad_packages_say_why() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not a zip".to_vec(), "not a zip file"),
            (zip_of(&[("../Memo.so", b"x")]), "not at the zip root"),
            (zip_of(&[("lib/Memo.so", b"x")]), "not at the zip root"),
            (
                zip_of(&[("Other@v1.0.0.so", b"x")]),
                "does not name plugin \"memo\"",
            ),
            (zip_of(&[("memo.json", b"{}")]), "no library"),
            (
                zip_of(&[("Memo.so", b"x"), ("memo.json", b"{")]),
                "memo.json is not valid JSON",
            ),
            (
                zip_of(&[("Memo.so", b"x"), ("evil.sh", b"x")]),
                "unexpected entry \"evil.sh\"",
            ),
        ];
        for (zip, want) in cases {
            let err = open(&zip, "memo").expect_err(want).to_string();
            assert!(err.contains(want), "{err} should say {want}");
        }
    }
}
