//! The file sink against real files in a temporary directory; compressed files are read back
//! with the system's `gzip` and `zstd` tools.

#[path = "support/rows.rs"]
mod rows;

use std::path::{Path, PathBuf};
use std::time::Duration;

use quiver_connectors::file::{FileSink, FileSinkConfig};
use quiver_connectors::{ConnectorError, Sink};
use rows::batch;
use serde_json::{Value, json};

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("quiver-file-sink-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }

    /// File names in the directory, sorted.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.0.join(name)).unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sink(props: Value) -> FileSink {
    FileSink::new(FileSinkConfig::parse(&props).expect("valid properties"))
}

fn decompress(tool: &str, path: &Path) -> String {
    let out = std::process::Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("running {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} -dc {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn lines_are_whole_messages_visible_after_each_emission() {
    let dir = TempDir::new("lines");
    let mut s = sink(json!({"path": dir.path("out.log")}));
    s.collect_list(&batch(&[("a", Some(1)), ("b", None)]))
        .await
        .unwrap();
    // Written (not only buffered) at the end of the emission, as a complete line.
    assert_eq!(
        dir.read("out.log"),
        "[{\"device\":\"a\",\"v\":1},{\"device\":\"b\"}]\n"
    );
    s.collect_list(&batch(&[("c", Some(3))])).await.unwrap();
    s.close().await.unwrap();
    assert_eq!(
        dir.read("out.log"),
        "[{\"device\":\"a\",\"v\":1},{\"device\":\"b\"}]\n[{\"device\":\"c\",\"v\":3}]\n"
    );
}

#[tokio::test]
async fn json_files_hold_one_array_and_are_closed_at_stop() {
    let dir = TempDir::new("json");
    let mut s = sink(json!({
        "path": dir.path("sub/out.json"), "fileType": "json", "format": "json",
        "sendSingle": true, "sendNilField": true
    }));
    s.collect_list(&batch(&[("a", Some(1)), ("b", None)]))
        .await
        .unwrap();
    s.collect_list(&batch(&[("c", Some(3))])).await.unwrap();
    s.close().await.unwrap();
    let v: Value = serde_json::from_str(&dir.read("sub/out.json")).unwrap();
    assert_eq!(
        v,
        json!([{"device": "a", "v": 1}, {"device": "b", "v": null}, {"device": "c", "v": 3}])
    );
}

#[tokio::test]
async fn csv_with_header_delimiter_fields_and_quoting() {
    let dir = TempDir::new("csv");
    let mut s = sink(json!({
        "path": dir.path("out.csv"), "fileType": "csv", "format": "delimited",
        "hasHeader": true, "delimiter": ";"
    }));
    s.collect_list(&batch(&[("a;1", Some(1)), ("say \"hi\"", None)]))
        .await
        .unwrap();
    s.collect_list(&batch(&[("c", Some(3))])).await.unwrap();
    s.close().await.unwrap();
    assert_eq!(
        dir.read("out.csv"),
        "device;v\n\"a;1\";1\n\"say \"\"hi\"\"\";\nc;3\n"
    );

    // `fields` orders the columns.
    let mut s = sink(json!({
        "path": dir.path("fields.csv"), "fileType": "csv", "hasHeader": true,
        "fields": ["v", "device"]
    }));
    s.collect_list(&batch(&[("a", Some(1))])).await.unwrap();
    s.close().await.unwrap();
    assert_eq!(dir.read("fields.csv"), "v,device\n1,a\n");
}

#[tokio::test]
async fn rolling_count_opens_suffixed_files_in_order() {
    let dir = TempDir::new("count");
    let mut s = sink(json!({
        "path": dir.path("out.txt"), "rollingCount": 2, "rollingNamePattern": "suffix",
        "sendSingle": true
    }));
    let rows: Vec<(String, Option<i64>)> = (0..5).map(|i| (format!("d{i}"), Some(i))).collect();
    let rows: Vec<(&str, Option<i64>)> = rows.iter().map(|(d, v)| (d.as_str(), *v)).collect();
    s.collect_list(&batch(&rows)).await.unwrap();
    s.close().await.unwrap();
    let names = dir.names();
    assert_eq!(names.len(), 3, "{names:?}");
    let mut stamps = Vec::new();
    for name in &names {
        let stamp = name
            .strip_prefix("out-")
            .and_then(|n| n.strip_suffix(".txt"))
            .unwrap_or_else(|| panic!("unexpected name {name}"));
        stamps.push(stamp.parse::<i64>().unwrap());
    }
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
    let lines: Vec<usize> = names.iter().map(|n| dir.read(n).lines().count()).collect();
    assert_eq!(lines, [2, 2, 1]);
    assert!(
        dir.read(&names[0])
            .starts_with("{\"device\":\"d0\",\"v\":0}\n")
    );
    assert_eq!(dir.read(&names[2]), "{\"device\":\"d4\",\"v\":4}\n");
}

#[tokio::test]
async fn rolling_interval_closes_an_old_file_even_without_new_rows() {
    let dir = TempDir::new("interval");
    let mut s = sink(json!({
        "path": dir.path("out.json"), "fileType": "json", "rollingInterval": 100,
        "checkInterval": 20, "rollingCount": 0, "rollingNamePattern": "prefix"
    }));
    s.collect_list(&batch(&[("a", Some(1))])).await.unwrap();
    // Rolled by the check alone: the first file is closed (its array ended) while idle.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let names = dir.names();
        // Parses once the outer array is closed.
        if names.len() == 1 && serde_json::from_str::<Value>(&dir.read(&names[0])).is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never rolled: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.collect_list(&batch(&[("b", Some(2))])).await.unwrap();
    s.close().await.unwrap();
    let names = dir.names();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.ends_with("-out.json")), "{names:?}");
    let contents: Vec<Value> = names
        .iter()
        .map(|n| serde_json::from_str(&dir.read(n)).unwrap())
        .collect();
    assert_eq!(
        contents,
        [
            json!([[{"device": "a", "v": 1}]]),
            json!([[{"device": "b", "v": 2}]])
        ]
    );
}

#[tokio::test]
async fn gzip_and_zstd_files_read_back_with_the_system_tools() {
    for (compression, tool) in [("gzip", "gzip"), ("zstd", "zstd")] {
        let dir = TempDir::new(compression);
        let mut s = sink(json!({
            "path": dir.path("out.lines"), "compression": compression, "sendSingle": true
        }));
        let mut expected = String::new();
        // Enough rows for several compressed chunks.
        for chunk in 0..4 {
            let rows: Vec<(String, Option<i64>)> = (0..5000)
                .map(|i| (format!("device-{chunk}-{i}"), Some(i)))
                .collect();
            let rows: Vec<(&str, Option<i64>)> =
                rows.iter().map(|(d, v)| (d.as_str(), *v)).collect();
            for (d, v) in &rows {
                expected.push_str(&format!("{{\"device\":\"{d}\",\"v\":{}}}\n", v.unwrap()));
            }
            s.collect_list(&batch(&rows)).await.unwrap();
        }
        s.close().await.unwrap();
        let path = dir.0.join("out.lines");
        assert_eq!(decompress(tool, &path), expected, "{compression}");
        assert!(std::fs::metadata(&path).unwrap().len() < expected.len() as u64 / 3);
    }
}

#[tokio::test]
async fn templated_paths_write_one_file_per_value() {
    let dir = TempDir::new("template");
    let mut s = sink(json!({
        "path": format!("{}/{{{{.device}}}}.log", dir.0.display()), "sendSingle": true
    }));
    s.collect_list(&batch(&[("a", Some(1)), ("b", Some(2)), ("a", Some(3))]))
        .await
        .unwrap();
    s.close().await.unwrap();
    assert_eq!(dir.names(), ["a.log", "b.log"]);
    assert_eq!(
        dir.read("a.log"),
        "{\"device\":\"a\",\"v\":1}\n{\"device\":\"a\",\"v\":3}\n"
    );
    // Payloads from a dataTemplate go to the path of their row.
    let mut s = sink(json!({
        "path": format!("{}/t-{{{{.device}}}}.txt", dir.0.display()), "sendSingle": true
    }));
    s.collect_rendered(
        &batch(&[("x", Some(1)), ("y", Some(2))]),
        &[b"one".to_vec(), b"two".to_vec()],
    )
    .await
    .unwrap();
    s.close().await.unwrap();
    assert_eq!(dir.read("t-x.txt"), "one\n");
    assert_eq!(dir.read("t-y.txt"), "two\n");
}

#[tokio::test]
async fn unwritable_paths_are_errors_naming_the_file() {
    let dir = TempDir::new("unwritable");
    std::fs::write(dir.0.join("plain"), "a file, not a directory").unwrap();
    let mut s = sink(json!({"path": dir.path("plain/out.log")}));
    let e = match s.collect_list(&batch(&[("a", Some(1))])).await.unwrap_err() {
        ConnectorError::Io { reason, .. } => reason,
        other => panic!("expected an I/O error, got {other}"),
    };
    assert!(e.starts_with("creating "), "{e}");
    assert!(e.contains("plain/out.log"), "{e}");
    s.close().await.unwrap();
}

#[tokio::test]
async fn a_dropped_sink_still_finishes_its_files() {
    let dir = TempDir::new("drop");
    let mut s = sink(json!({"path": dir.path("out.json"), "fileType": "json"}));
    s.collect_list(&batch(&[("a", Some(1))])).await.unwrap();
    drop(s);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // Parses once the outer array is closed.
    while serde_json::from_str::<Value>(&dir.read("out.json")).is_err() {
        assert!(std::time::Instant::now() < deadline, "never finished");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let v: Value = serde_json::from_str(&dir.read("out.json")).unwrap();
    assert_eq!(v, json!([[{"device": "a", "v": 1}]]));
}

#[tokio::test]
async fn lines_files_take_the_byte_formats() {
    let dir = TempDir::new("formats");
    let rows = batch(&[("a", Some(1)), ("b", None)]);
    let mut s = sink(json!({"path": dir.path("u.log"), "format": "urlencoded"}));
    s.collect_list(&rows).await.unwrap();
    s.close().await.unwrap();
    assert_eq!(dir.read("u.log"), "device=a&v=1\ndevice=b\n");

    let mut s = sink(json!({"path": dir.path("d.log"), "format": "delimited", "delimiter": ";"}));
    s.collect_list(&rows).await.unwrap();
    s.close().await.unwrap();
    assert_eq!(dir.read("d.log"), "a;1\nb;\n");

    // binary: the one field's bytes, a message per row.
    let mut s = sink(json!({"path": dir.path("b.bin"), "format": "binary"}));
    s.collect_list(&rows.project(&[0]).unwrap()).await.unwrap();
    s.close().await.unwrap();
    assert_eq!(dir.read("b.bin"), "a\nb\n");

    // A templated path: each row's message in its row's file.
    let mut s = sink(json!({
        "path": format!("{}/{{{{.device}}}}.csv", dir.0.display()), "format": "delimited"
    }));
    s.collect_list(&batch(&[("x", Some(1)), ("y", Some(2)), ("x", Some(3))]))
        .await
        .unwrap();
    s.close().await.unwrap();
    assert_eq!(dir.read("x.csv"), "x,1\nx,3\n");
    assert_eq!(dir.read("y.csv"), "y,2\n");

    for (props, want) in [
        (
            json!({"path": "x", "format": "binary", "fileType": "csv"}),
            "does not fit fileType Csv",
        ),
        (
            json!({"path": "x", "format": "delimited", "hasHeader": true}),
            "\"hasHeader\" applies to fileType csv",
        ),
        (
            json!({"path": "x", "format": "protobuf", "fileType": "json"}),
            "does not fit",
        ),
        (json!({"path": "x", "format": "xml"}), "does not fit"),
    ] {
        let e = FileSinkConfig::parse(&props).unwrap_err().to_string();
        assert!(e.contains(want), "{props}: {e}");
    }
}
