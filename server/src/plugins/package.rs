//! Plugin packages: fetching a zip (`file://`, `http://` or `https://`) and checking it before
//! anything touches the plugin folders.
//!
//! eKuiper's layout: every entry at the zip root, one `Name@vX.Y.Z.so` (or `Name.so`), an
//! optional `name.json` metadata file, optionally `name.yaml` and `install.sh`. `install.sh`
//! is never run (it would run arbitrary code as the server's user).
//!
//! Every read is bounded: the download or file size, the whole package's unpacked size, the
//! entry count, the metadata size, and the time. `file://` reads only regular files inside
//! the folder the operator allowed (`--plugin-file-dir`); file reads and unpacking run on
//! blocking threads, never on the async ones. `https://` verifies the server against the
//! system's root certificates (`SSL_CERT_FILE`/`SSL_CERT_DIR` point elsewhere); an install body's
//! optional `sha256` is checked against the bytes before they are unpacked ([`check_sha256`]).

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::PluginError;

/// The largest zip we download or read: plugin libraries are a few MiB to tens of MiB (the
/// MySQL plugin is about 10 MiB); 256 MiB leaves room for debug builds.
pub const MAX_ZIP_BYTES: u64 = 256 << 20;
/// The most a whole package may unpack to, all entries together (a zip bomb inflates a few KiB
/// into gigabytes). The same 256 MiB as the download: a library barely compresses.
pub const MAX_UNPACKED_BYTES: u64 = 256 << 20;
/// The largest `name.json` or `name.yaml`: a description and a few default properties are a
/// few KiB; 1 MiB bounds the time their parsers take.
pub const MAX_METADATA_BYTES: u64 = 1 << 20;
/// At most this many entries in a package: eKuiper's layout has four (library, json, yaml,
/// install.sh), so 16 is generous, and the count is checked before the zip reader builds its
/// directory.
pub const MAX_ENTRIES: usize = 16;
/// A download must finish within this: 256 MiB at 5 MiB/s.
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Reading a local package file must finish within this; a local disk reads 256 MiB in
/// seconds, so a slower read is a stuck device or network mount.
pub const FILE_READ_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Reads the zip at `url` (`file:///abs/path.zip` inside `file_dir`,
/// `http://host:port/path.zip` or `https://host:port/path.zip`).
pub async fn fetch(url: &str, file_dir: Option<&Path>) -> Result<Vec<u8>, PluginError> {
    if let Some(path) = url.strip_prefix("file://") {
        let Some(dir) = file_dir else {
            return Err(PluginError::Invalid(format!(
                "cannot read {url}: file:// installs are off; start quiverd with --plugin-file-dir DIR and put the zip there, or install over https://"
            )));
        };
        let (path, dir, url_owned) = (PathBuf::from(path), dir.to_path_buf(), url.to_string());
        let read = tokio::task::spawn_blocking(move || read_local(&url_owned, &path, &dir));
        return match tokio::time::timeout(FILE_READ_TIMEOUT, read).await {
            Ok(joined) => joined.map_err(|e| PluginError::Io(format!("reading {url}: {e}")))?,
            // The blocking read stays behind; no lock is held, so nothing else waits for it.
            Err(_) => Err(PluginError::Invalid(format!(
                "reading {url} took longer than the limit of {}s",
                FILE_READ_TIMEOUT.as_secs()
            ))),
        };
    }
    let (rest, tls) = if let Some(rest) = url.strip_prefix("http://") {
        (rest, false)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (rest, true)
    } else {
        return Err(PluginError::Invalid(format!(
            "unsupported plugin file URL \"{url}\"; use https://host/plugin.zip, http://host/plugin.zip or file:///path/plugin.zip"
        )));
    };
    tokio::time::timeout(DOWNLOAD_TIMEOUT, http_get(url, rest, tls))
        .await
        .map_err(|_| {
            PluginError::Invalid(format!(
                "downloading {url} took longer than {}s",
                DOWNLOAD_TIMEOUT.as_secs()
            ))
        })?
}

/// Checks that `bytes` (the package from `url`) have the SHA-256 `expected` (hex, any case).
pub fn check_sha256(url: &str, bytes: &[u8], expected: &str) -> Result<(), PluginError> {
    let actual: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(PluginError::Invalid(format!(
            "sha256 mismatch for {url}: the request expects {}, the package's is {actual}; \
             nothing was installed",
            expected.to_ascii_lowercase()
        )))
    }
}

/// Checks the form of an install body's `sha256`: 64 hexadecimal digits.
pub fn validate_sha256(digest: &str) -> Result<(), PluginError> {
    if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(PluginError::Invalid(format!(
            "\"sha256\" must be the package's SHA-256 as 64 hexadecimal digits, got \"{digest}\""
        )))
    }
}

fn too_big(url: &str) -> PluginError {
    PluginError::Invalid(format!(
        "{url} is above the limit of {MAX_ZIP_BYTES} bytes ({} MiB) for a plugin package",
        MAX_ZIP_BYTES >> 20
    ))
}

/// Reads a local package: a regular file inside `dir` (after following links), at most
/// [`MAX_ZIP_BYTES`]. Blocking; the caller runs it off the async threads.
fn read_local(url: &str, path: &Path, dir: &Path) -> Result<Vec<u8>, PluginError> {
    let cannot = |e: std::io::Error| PluginError::Invalid(format!("cannot read {url}: {e}"));
    let real = path.canonicalize().map_err(cannot)?;
    if !real.starts_with(dir) {
        return Err(PluginError::Invalid(format!(
            "cannot read {url}: it is outside {}, the folder --plugin-file-dir allows",
            dir.display()
        )));
    }
    // Devices (`/dev/zero`), FIFOs and sockets never end or block: only regular files.
    let not_regular =
        || PluginError::Invalid(format!("cannot read {url}: it is not a regular file"));
    if !std::fs::metadata(&real).map_err(cannot)?.is_file() {
        return Err(not_regular());
    }
    let file = std::fs::File::open(&real).map_err(cannot)?;
    // Checked again on the open file, in case the path changed since.
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    if meta.len() > MAX_ZIP_BYTES {
        return Err(too_big(url));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_ZIP_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_ZIP_BYTES {
        return Err(too_big(url));
    }
    Ok(bytes)
}

/// The connection a download reads: plain TCP or TLS over it.
trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

/// A minimal HTTP/1.1 GET over TCP or TLS: enough for a package server (Content-Length,
/// chunked or read-to-close bodies), without pulling an HTTP client into the server.
async fn http_get(url: &str, rest: &str, tls: bool) -> Result<Vec<u8>, PluginError> {
    let fail = |why: String| PluginError::Invalid(format!("cannot download {url}: {why}"));
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (name, addr) = host_and_address(host, if tls { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut stream: Box<dyn Connection> = if tls {
        // The system's roots are read from disk the first time: off the async threads.
        let client =
            tokio::task::spawn_blocking(quiver_connectors::tls::TlsClient::with_system_roots)
                .await
                .map_err(|e| fail(e.to_string()))?
                .map_err(fail)?;
        let server_name = rustls::pki_types::ServerName::try_from(name.to_string())
            .map_err(|e| fail(format!("\"{name}\" is not a host name for TLS: {e}")))?;
        let connector = tokio_rustls::TlsConnector::from(client.config());
        Box::new(
            connector
                .connect(server_name, tcp)
                .await
                .map_err(|e| fail(format!("TLS handshake failed: {e}")))?,
        )
    } else {
        Box::new(tcp)
    };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: */*\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut raw = Vec::new();
    let mut limited = (&mut stream).take(MAX_ZIP_BYTES + 64 * 1024);
    // A TLS server that closes without close_notify: the body counts only if its own framing
    // (Content-Length or chunks) shows it is whole, since the cut may be an attacker's.
    let mut unframed_end_ok = true;
    match limited.read_to_end(&mut raw).await {
        Ok(_) => {}
        Err(e) if tls && e.kind() == std::io::ErrorKind::UnexpectedEof => unframed_end_ok = false,
        Err(e) => return Err(fail(e.to_string())),
    }
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
    let chunked = head.contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body).ok_or_else(|| fail("bad chunked body".into()))?
    } else {
        body.to_vec()
    };
    if body.len() as u64 > MAX_ZIP_BYTES {
        return Err(too_big(url));
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    if let Some(len) = length
        && len != body.len()
    {
        return Err(fail(format!(
            "got {} of {len} bytes (the connection closed early)",
            body.len()
        )));
    }
    if !unframed_end_ok && !chunked && length.is_none() {
        return Err(fail(
            "the TLS connection ended without close_notify and the response has no length, \
             so the package may be cut short"
                .into(),
        ));
    }
    Ok(body)
}

/// The host name (for TLS) and the `host:port` to connect to, from a URL's authority
/// (`example.com`, `example.com:8443`, `[::1]:8443`).
fn host_and_address(authority: &str, default_port: u16) -> (&str, String) {
    if let Some(v6) = authority.strip_prefix('[')
        && let Some((name, after)) = v6.split_once(']')
    {
        let port = after.strip_prefix(':').unwrap_or("");
        let port = if port.is_empty() {
            default_port.to_string()
        } else {
            port.to_string()
        };
        return (name, format!("[{name}]:{port}"));
    }
    match authority.rsplit_once(':') {
        Some((name, _)) => (name, authority.to_string()),
        None => (authority, format!("{authority}:{default_port}")),
    }
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

/// The entry counts the zip's end-of-central-directory records claim, read before the zip
/// reader builds a directory of that size. Every candidate record in the zip's tail counts,
/// since a reader may pick any of them; `0xFFFF` means a ZIP64 count, which no package needs.
fn claimed_entries(bytes: &[u8]) -> Option<usize> {
    const EOCD: &[u8] = b"PK\x05\x06";
    const EOCD_LEN: usize = 22;
    // The record sits at most a 64 KiB comment before the end.
    let tail_from = bytes.len().saturating_sub(EOCD_LEN + 0xFFFF);
    let tail = &bytes[tail_from..];
    tail.windows(EOCD.len())
        .enumerate()
        .filter(|(i, w)| *w == EOCD && i + EOCD_LEN <= tail.len())
        .map(|(i, _)| {
            let record = &tail[i..];
            let on_disk = u16::from_le_bytes([record[8], record[9]]);
            let total = u16::from_le_bytes([record[10], record[11]]);
            usize::from(on_disk.max(total))
        })
        .max()
}

/// Checks the zip for plugin `name` and takes out its parts. Nothing is written to disk.
/// Blocking (inflation and the JSON and YAML parsers); the caller runs it off the async
/// threads.
pub fn open(bytes: &[u8], name: &str) -> Result<Package, PluginError> {
    open_limited(bytes, name, MAX_UNPACKED_BYTES)
}

/// [`open`] with the package's unpacked size limited to `unpacked` bytes (tests use a small
/// one).
fn open_limited(bytes: &[u8], name: &str, unpacked: u64) -> Result<Package, PluginError> {
    let bad = |why: String| PluginError::Invalid(format!("bad plugin package: {why}"));
    if let Some(n) = claimed_entries(bytes)
        && n > MAX_ENTRIES
    {
        return Err(bad(format!(
            "{n} entries is above the limit of {MAX_ENTRIES}"
        )));
    }
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| bad(format!("not a zip file ({e})")))?;
    if zip.len() > MAX_ENTRIES {
        return Err(bad(format!(
            "{} entries is above the limit of {MAX_ENTRIES}",
            zip.len()
        )));
    }
    // What the entries may still unpack to, all together.
    let mut budget = unpacked;
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
        // The entry's share: what is left of the package's budget; the metadata files also
        // have a smaller limit of their own.
        let (limit, over) = if entry_name.ends_with(".so") || budget < MAX_METADATA_BYTES {
            (
                budget,
                format!("the package unpacks to more than the limit of {unpacked} bytes"),
            )
        } else {
            (
                MAX_METADATA_BYTES,
                format!(
                    "entry \"{entry_name}\" unpacks to more than the limit of {MAX_METADATA_BYTES} bytes for a metadata file"
                ),
            )
        };
        if entry.size() > limit {
            return Err(bad(over));
        }
        let mut read = |entry: &mut zip::read::ZipFile<'_, _>| -> Result<Vec<u8>, PluginError> {
            let mut data = Vec::new();
            // The declared size can lie; never read past the limit.
            entry
                .take(limit + 1)
                .read_to_end(&mut data)
                .map_err(|e| bad(format!("entry \"{entry_name}\" is corrupt ({e})")))?;
            if data.len() as u64 > limit {
                return Err(bad(over.clone()));
            }
            budget -= data.len() as u64;
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

    pub(super) fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
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

#[cfg(test)]
mod limit_tests {
    use super::tests::zip_of;
    use super::*;

    fn refusal<T: std::fmt::Debug>(result: Result<T, PluginError>) -> String {
        result.expect_err("refused").to_string()
    }

    #[test]
    fn the_whole_package_not_each_entry_is_bounded() {
        // Each entry alone fits; together they do not.
        let so = vec![0u8; 600];
        let json = format!("{{\"about\": \"{}\"}}", " ".repeat(600));
        let zip = zip_of(&[("Memo.so", &so), ("memo.json", json.as_bytes())]);
        assert!(open_limited(&zip, "memo", 2000).is_ok());
        assert_eq!(
            refusal(open_limited(&zip, "memo", 1000)),
            "bad plugin package: the package unpacks to more than the limit of 1000 bytes"
        );
    }

    #[test]
    fn metadata_files_have_their_own_limit() {
        let big = format!("{{\"a\": \"{}\"}}", " ".repeat(MAX_METADATA_BYTES as usize));
        let zip = zip_of(&[("Memo.so", b"x"), ("memo.json", big.as_bytes())]);
        assert_eq!(
            refusal(open(&zip, "memo")),
            "bad plugin package: entry \"memo.json\" unpacks to more than the limit of 1048576 bytes for a metadata file"
        );
    }

    #[test]
    fn entry_counts_are_checked_before_the_directory_is_read() {
        let names: Vec<String> = (0..17).map(|i| format!("f{i}.txt")).collect();
        let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let zip = zip_of(&entries);
        assert_eq!(claimed_entries(&zip), Some(17));
        assert_eq!(
            refusal(open(&zip, "memo")),
            "bad plugin package: 17 entries is above the limit of 16"
        );
        // A record that claims 60 000 entries is refused without reading any of them.
        let mut forged = b"PK\x05\x06\0\0\0\0".to_vec();
        forged.extend_from_slice(&60_000u16.to_le_bytes());
        forged.extend_from_slice(&60_000u16.to_le_bytes());
        forged.extend_from_slice(&[0; 10]);
        assert_eq!(
            refusal(open(&forged, "memo")),
            "bad plugin package: 60000 entries is above the limit of 16"
        );
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("quiver-pkg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.canonicalize().expect("canonical")
    }

    #[test]
    fn local_reads_stay_in_the_allowed_folder_and_read_only_regular_files() {
        let dir = temp("local");
        let allowed = dir.join("allowed");
        std::fs::create_dir_all(&allowed).expect("allowed dir");
        std::fs::write(allowed.join("ok.zip"), b"zip").expect("write");
        std::fs::write(dir.join("outside.zip"), b"zip").expect("write");
        assert_eq!(
            read_local("u", &allowed.join("ok.zip"), &allowed).expect("inside"),
            b"zip"
        );
        let outside = refusal(read_local("u", &allowed.join("../outside.zip"), &allowed));
        assert!(outside.contains("is outside"), "{outside}");
        let status = std::process::Command::new("mkfifo")
            .arg(allowed.join("fifo.zip"))
            .status()
            .expect("mkfifo runs");
        assert!(status.success());
        // A FIFO would block the read forever: refused before it is opened.
        let fifo = read_local("u", &allowed.join("fifo.zip"), &allowed);
        assert_eq!(refusal(fifo), "cannot read u: it is not a regular file");
        let zero = read_local("u", Path::new("/dev/zero"), Path::new("/dev"));
        assert_eq!(refusal(zero), "cannot read u: it is not a regular file");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
