//! The file source against real files in a temporary directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quiver_connectors::file::{CHUNK_ROWS, FileSource, FileSourceConfig};
use quiver_connectors::{
    ConnectorError, Connectors, Source, SourceEvent, SourceOutput, SourceSpec,
};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "quiver-file-test-{}-{name}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, content).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(path: &Path, props: Value) -> FileSourceConfig {
    FileSourceConfig::parse(
        path.to_str().expect("utf-8 path"),
        props.as_object().expect("props object"),
    )
    .expect("valid config")
}

/// Runs the source to its end with a roomy queue; returns the events and the result.
async fn run_to_end(
    mut source: impl Source + 'static,
) -> (Vec<Vec<Value>>, Result<(), ConnectorError>) {
    let (tx, mut rx) = mpsc::channel(1_000_000);
    let out = SourceOutput::new(vec![tx], Arc::new(|_| {}));
    let result = tokio::time::timeout(Duration::from_secs(30), source.run(out))
        .await
        .expect("the source ends at the end of the file");
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        let msgs = event
            .into_messages()
            .expect("the file source sends raw payloads");
        events.push(
            msgs.iter()
                .map(|m| serde_json::from_slice(&m.payload).expect("payload is JSON"))
                .collect(),
        );
    }
    (events, result)
}

async fn rows_of(path: &Path, props: Value) -> Vec<Value> {
    let (events, result) = run_to_end(FileSource::new(config(path, props))).await;
    result.expect("source succeeds");
    events.into_iter().flatten().collect()
}

#[tokio::test]
async fn lines_file_is_sent_in_blocks_of_whole_lines_and_ends() {
    let dir = TempDir::new("lines");
    // About 900 KB: several read blocks, so lines cross block boundaries.
    let n = 60_000;
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!("{{\"i\":{i}}}\r\n"));
        if i == 5 {
            text.push_str("   \n");
        }
    }
    let path = dir.write("in.jsonl", &text);
    let (events, result) = run_to_end(FileSource::new(config(&path, json!({})))).await;
    result.unwrap();
    assert!(events.len() > 2, "{} events", events.len());
    let rows: Vec<Value> = events.into_iter().flatten().collect();
    assert_eq!(rows.len(), n);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row, &json!({"i": i}));
    }
}

#[tokio::test]
async fn skipped_lines_are_sent_in_chunks_of_rows() {
    let dir = TempDir::new("skip");
    let n = 2 * CHUNK_ROWS + 11;
    let text: String = (0..n).map(|i| format!("{{\"i\":{i}}}\n")).collect();
    let path = dir.write("in.jsonl", &text);
    let (events, result) = run_to_end(FileSource::new(config(
        &path,
        json!({"ignoreStartLines": 1}),
    )))
    .await;
    result.unwrap();
    let sizes: Vec<usize> = events.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![CHUNK_ROWS, CHUNK_ROWS, 10]);
    assert_eq!(events[0][0], json!({"i": 1}));
}

#[tokio::test]
async fn lines_skip_start_and_end_lines() {
    let dir = TempDir::new("skip");
    let path = dir.write(
        "in.txt",
        "# generated\n# by a tool\n{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n-- end --",
    );
    let rows = rows_of(
        &path,
        json!({"fileType": "lines", "ignoreStartLines": 2, "ignoreEndLines": 1}),
    )
    .await;
    assert_eq!(rows, vec![json!({"a":1}), json!({"a":2}), json!({"a":3})]);
}

#[tokio::test]
async fn malformed_lines_are_passed_on_for_the_decoder_to_count() {
    let dir = TempDir::new("bad");
    let path = dir.write("in.jsonl", "{\"a\":1}\nnot json\n{\"a\":2}\n");
    let mut source = FileSource::new(config(&path, json!({})));
    let (tx, mut rx) = mpsc::channel(16);
    source
        .run(SourceOutput::new(vec![tx], Arc::new(|_| {})))
        .await
        .unwrap();
    let msgs = rx
        .recv()
        .await
        .and_then(SourceEvent::into_messages)
        .expect("expected one raw event");
    let payloads: Vec<&[u8]> = msgs.iter().map(|m| &m.payload[..]).collect();
    assert_eq!(payloads, vec![&b"{\"a\":1}"[..], b"not json", b"{\"a\":2}"]);
    assert_eq!(msgs[0].topic.as_ref(), path.to_str().unwrap());
}

#[tokio::test]
async fn json_array_and_single_object() {
    let dir = TempDir::new("json");
    let path = dir.write(
        "in.json",
        r#" [ {"id": 1, "name": "a"}, {"id": 2, "tags": [1, 2], "loc": {"x": 1.5}} ] "#,
    );
    let rows = rows_of(&path, json!({})).await;
    assert_eq!(
        rows,
        vec![
            json!({"id": 1, "name": "a"}),
            json!({"id": 2, "tags": [1, 2], "loc": {"x": 1.5}})
        ]
    );
    let one = dir.write("one.json", r#"{"id": 7}"#);
    assert_eq!(rows_of(&one, json!({})).await, vec![json!({"id": 7})]);
    let empty = dir.write("empty.json", "[]");
    assert!(rows_of(&empty, json!({})).await.is_empty());
}

#[tokio::test]
async fn json_large_array_streams_in_chunks() {
    let dir = TempDir::new("jsonbig");
    let items: Vec<String> = (0..3000).map(|i| format!("{{\"i\":{i}}}")).collect();
    let path = dir.write("big.json", &format!("[{}]", items.join(",\n")));
    let (events, result) = run_to_end(FileSource::new(config(&path, json!({})))).await;
    result.unwrap();
    let sizes: Vec<usize> = events.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![1024, 1024, 952]);
}

#[tokio::test]
async fn broken_json_document_fails_naming_the_file() {
    let dir = TempDir::new("jsonbad");
    let path = dir.write("bad.json", r#"[{"id": 1}, {"id": 2"#);
    let (_, result) = run_to_end(FileSource::new(config(&path, json!({})))).await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("bad.json"), "{err}");
}

#[tokio::test]
async fn csv_with_header_types_numbers_and_keeps_quoted_strings() {
    let dir = TempDir::new("csv");
    let path = dir.write(
        "in.csv",
        "\u{feff}device,temperature,code,note\n\
         dev-1,23.5,\"007\",plain\n\
         dev-2, -4,012,\"with \"\"quotes\"\", a comma\nand a newline\"\n\
         \n\
         dev-3,,1e3,\n",
    );
    let rows = rows_of(&path, json!({})).await;
    assert_eq!(
        rows,
        vec![
            json!({"device": "dev-1", "temperature": 23.5, "code": "007", "note": "plain"}),
            json!({"device": "dev-2", "temperature": -4, "code": "012",
                   "note": "with \"quotes\", a comma\nand a newline"}),
            json!({"device": "dev-3", "code": 1e3}),
        ]
    );
}

#[tokio::test]
async fn csv_columns_delimiter_and_no_header() {
    let dir = TempDir::new("csvcols");
    let path = dir.write("in.txt", "meta line\na;b\n1;x\n2;y\ntrailer\n");
    let props = json!({"fileType": "csv", "delimiter": ";", "columns": ["n", "s"],
                       "hasHeader": true, "ignoreStartLines": 1, "ignoreEndLines": 1});
    assert_eq!(
        rows_of(&path, props).await,
        vec![json!({"n": 1, "s": "x"}), json!({"n": 2, "s": "y"})]
    );
    let path = dir.write("plain.csv", "1,x\n2,y\n");
    assert_eq!(
        rows_of(&path, json!({"hasHeader": false})).await,
        vec![
            json!({"cols0": 1, "cols1": "x"}),
            json!({"cols0": 2, "cols1": "y"})
        ]
    );
}

#[tokio::test]
async fn unclosed_csv_quote_fails_with_the_line() {
    let dir = TempDir::new("csvbad");
    let path = dir.write("bad.csv", "a,b\n1,\"never closed\n2,3\n");
    let (events, result) = run_to_end(FileSource::new(config(&path, json!({})))).await;
    assert!(events.is_empty());
    let err = result.unwrap_err().to_string();
    assert!(err.contains("bad.csv") && err.contains("line 2"), "{err}");
}

#[tokio::test]
async fn missing_file_fails_naming_the_path() {
    let dir = TempDir::new("missing");
    let path = dir.0.join("nope.jsonl");
    let (events, result) = run_to_end(FileSource::new(config(&path, json!({})))).await;
    assert!(events.is_empty());
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("cannot open") && err.contains(path.to_str().unwrap()),
        "{err}"
    );
}

#[tokio::test]
async fn directory_is_read_in_name_order_through_the_registry() {
    let dir = TempDir::new("dir");
    std::fs::create_dir(dir.0.join("in")).unwrap();
    dir.write("in/b.jsonl", "{\"f\":\"b\"}\n");
    dir.write("in/a.jsonl", "{\"f\":\"a\"}\n");
    dir.write("in/c.json", "[{\"f\":\"c\"}]");
    let mut props = Map::new();
    props.insert("path".into(), Value::from(dir.0.to_str().unwrap()));
    let spec = SourceSpec {
        source_type: "file".into(),
        datasource: "in".into(),
        props,
        ..Default::default()
    };
    let connectors = Connectors::new();
    assert!(connectors.source_types().contains(&"file"));
    let mut source = connectors.source(&spec).expect("file source");
    let (tx, mut rx) = mpsc::channel(16);
    source
        .run(SourceOutput::new(vec![tx], Arc::new(|_| {})))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Some(msgs) = rx.try_recv().ok().and_then(SourceEvent::into_messages) {
        for m in msgs {
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            seen.push(v["f"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(seen, vec!["a", "b", "c"]);
}

#[tokio::test]
async fn a_slow_rule_holds_the_reader_back_and_a_stopped_rule_ends_it() {
    let dir = TempDir::new("backpressure");
    let text: String = (0..200_000).map(|i| format!("{{\"i\":{i}}}\n")).collect();
    let path = dir.write("big.jsonl", &text);
    let mut source = FileSource::new(config(&path, json!({})));
    let (tx, mut rx) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        source
            .run(SourceOutput::new(vec![tx], Arc::new(|_| {})))
            .await
    });
    let first = rx.recv().await.expect("a first chunk");
    let first = first.into_messages().expect("raw lines").len();
    assert!(
        first > 0 && first < 200_000,
        "a first block of {first} lines"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !task.is_finished(),
        "the source must wait for the rule, not read the whole file ahead"
    );
    drop(rx);
    let result = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the source ends once the rule is gone")
        .expect("no panic");
    assert!(matches!(result, Err(ConnectorError::Closed)), "{result:?}");
}

#[tokio::test]
async fn send_interval_paces_rows_one_by_one() {
    let dir = TempDir::new("pace");
    let path = dir.write("in.jsonl", "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
    let started = std::time::Instant::now();
    let (events, result) = run_to_end(FileSource::new(config(
        &path,
        json!({"sendInterval": "30ms"}),
    )))
    .await;
    result.unwrap();
    assert_eq!(
        events.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![1, 1, 1]
    );
    assert!(started.elapsed() >= Duration::from_millis(60));
}

/// The `f` fields of the rows in `events`, sorted (parallel reads interleave files).
fn sorted_fields(events: Vec<Vec<Value>>) -> Vec<String> {
    let mut fields: Vec<String> = events
        .into_iter()
        .flatten()
        .map(|v| v["f"].as_str().expect("field f").to_string())
        .collect();
    fields.sort();
    fields
}

/// Compresses `path` in place with the system's `tool` (gzip or zstd), as a user would.
fn compress(tool: &str, path: &Path) {
    // gzip replaces the file by default; zstd keeps it unless told.
    let args: &[&str] = if tool == "zstd" {
        &["-q", "--rm"]
    } else {
        &["-q"]
    };
    let status = std::process::Command::new(tool)
        .args(args)
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("{tool} must be installed (scripts/test.sh does): {e}"));
    assert!(status.success(), "{tool} failed");
}

#[tokio::test]
async fn compressed_files_are_read_with_decompression() {
    let dir = TempDir::new("decompress");
    std::fs::create_dir(dir.0.join("gz")).unwrap();
    std::fs::create_dir(dir.0.join("zst")).unwrap();
    compress(
        "gzip",
        &dir.write("gz/a.jsonl", "{\"f\":\"a\"}\n{\"f\":\"b\"}\n"),
    );
    compress("gzip", &dir.write("gz/b.csv", "f,n\nc,1\n"));
    compress(
        "zstd",
        &dir.write("zst/c.json", "[{\"f\":\"d\"},{\"f\":\"e\"}]"),
    );
    let rows = rows_of(&dir.0.join("gz"), json!({"decompression": "gzip"})).await;
    assert_eq!(
        rows,
        vec![
            json!({"f": "a"}),
            json!({"f": "b"}),
            json!({"f": "c", "n": 1})
        ]
    );
    let rows = rows_of(&dir.0.join("zst"), json!({"decompression": "zstd"})).await;
    assert_eq!(rows, vec![json!({"f": "d"}), json!({"f": "e"})]);
    // Plain bytes where gzip was promised: the source fails naming the file, it never
    // passes compressed garbage on as rows.
    let plain = dir.write("plain.jsonl", "{\"f\":\"x\"}\n");
    let (_, result) = run_to_end(FileSource::new(config(
        &plain,
        json!({"decompression": "gzip"}),
    )))
    .await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("plain.jsonl"), "{err}");
}

#[tokio::test]
async fn files_read_are_deleted_or_moved() {
    let dir = TempDir::new("after-read");
    std::fs::create_dir(dir.0.join("in")).unwrap();
    dir.write("in/a.jsonl", "{\"f\":\"a\"}\n");
    dir.write("in/b.jsonl", "{\"f\":\"b\"}\n");
    let rows = rows_of(&dir.0.join("in"), json!({"actionAfterRead": 1})).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(
        std::fs::read_dir(dir.0.join("in")).unwrap().count(),
        0,
        "both deleted"
    );

    dir.write("in/c.jsonl", "{\"f\":\"c\"}\n");
    let done = dir.0.join("done/sub");
    let rows = rows_of(
        &dir.0.join("in"),
        json!({"actionAfterRead": "2", "moveTo": done.to_str().unwrap()}),
    )
    .await;
    assert_eq!(rows, vec![json!({"f": "c"})]);
    assert!(!dir.0.join("in/c.jsonl").exists());
    assert_eq!(
        std::fs::read_to_string(done.join("c.jsonl")).unwrap(),
        "{\"f\":\"c\"}\n",
        "moved whole, under its own name, into a directory created for it"
    );
}

#[tokio::test]
async fn a_watched_folder_reads_files_dropped_in_later() {
    let dir = TempDir::new("watch");
    let inbox = dir.0.join("inbox");
    let mut source = FileSource::new(config(
        &inbox,
        json!({"actionAfterRead": 1, "interval": 50}),
    ));
    let (tx, mut rx) = mpsc::channel(16);
    let task = tokio::spawn(async move {
        source
            .run(SourceOutput::new(vec![tx], Arc::new(|_| {})))
            .await
    });
    // The folder does not exist yet: rounds are empty until it does.
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::create_dir(&inbox).unwrap();
    for name in ["1", "2"] {
        // Written beside the folder, then renamed in: the source never sees half a file.
        let staged = dir.write(&format!("{name}.jsonl"), &format!("{{\"f\":\"{name}\"}}\n"));
        std::fs::rename(&staged, inbox.join(format!("{name}.jsonl"))).unwrap();
        let event = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the new file is read on the next round")
            .expect("the source is running");
        let msgs = event.into_messages().unwrap();
        let v: Value = serde_json::from_slice(&msgs[0].payload).unwrap();
        assert_eq!(v, json!({"f": name}));
    }
    assert!(!task.is_finished(), "a watching source keeps running");
    // A file is deleted once its rows were handed on, just after the rule received them.
    for _ in 0..200 {
        if std::fs::read_dir(&inbox).unwrap().count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    assert_eq!(
        std::fs::read_dir(&inbox).unwrap().count(),
        0,
        "read files were deleted"
    );
}

#[tokio::test]
async fn parallel_reads_every_file_of_a_folder() {
    let dir = TempDir::new("parallel");
    std::fs::create_dir(dir.0.join("in")).unwrap();
    let mut expected = Vec::new();
    for i in 0..9 {
        let rows: String = (0..3000)
            .map(|r| {
                expected.push(format!("{i}-{r:04}"));
                format!("{{\"f\":\"{i}-{r:04}\"}}\n")
            })
            .collect();
        dir.write(&format!("in/{i}.jsonl"), &rows);
    }
    expected.sort();
    let (events, result) = run_to_end(FileSource::new(config(
        &dir.0.join("in"),
        json!({"parallel": true}),
    )))
    .await;
    result.unwrap();
    assert_eq!(sorted_fields(events), expected);
}
