//! What the user sees: text and tables on stdout, errors and the progress spinner on stderr.
//!
//! Colour only when the stream is a terminal and `NO_COLOR` is unset or empty
//! (<https://no-color.org>); the spinner only when stderr is a terminal, so pipes and scripts
//! get plain text. Tables are laid out here (a few lines: columns padded to their widest cell)
//! rather than with a table crate, which would bring width tables and styling we don't need.
//! With `--json`, commands print the server's JSON unchanged through [`Output::raw_json`].

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

/// An ANSI style for a table cell or message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Headers.
    Bold,
    /// Running, success.
    Green,
    /// Stopped.
    Yellow,
    /// Errors.
    Red,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Bold => "1",
            Style::Green => "32",
            Style::Yellow => "33",
            Style::Red => "31",
        }
    }
}

/// One table cell: its text and an optional style (widths count the text only).
#[derive(Debug, Clone)]
pub struct Cell {
    text: String,
    style: Option<Style>,
}

impl Cell {
    /// A plain cell.
    pub fn plain(text: impl Into<String>) -> Self {
        Cell {
            text: text.into(),
            style: None,
        }
    }

    /// A styled cell.
    pub fn styled(text: impl Into<String>, style: Option<Style>) -> Self {
        Cell {
            text: text.into(),
            style,
        }
    }
}

/// The style of a rule status word.
pub fn status_style(status: &str) -> Option<Style> {
    match status {
        "running" => Some(Style::Green),
        "stopped" => Some(Style::Yellow),
        _ if status.starts_with("stopped") => Some(Style::Red),
        _ => None,
    }
}

/// Where and how a command prints.
#[derive(Debug)]
pub struct Output {
    /// `--json`: print the server's JSON unchanged.
    pub json: bool,
    colour_out: bool,
    colour_err: bool,
    spinner: bool,
}

fn colour_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

impl Output {
    /// Output for this process's terminals.
    pub fn new(json: bool) -> Self {
        let stderr_tty = std::io::stderr().is_terminal();
        Output {
            json,
            colour_out: !json && std::io::stdout().is_terminal() && colour_allowed(),
            colour_err: stderr_tty && colour_allowed(),
            spinner: stderr_tty,
        }
    }

    fn paint(&self, enabled: bool, text: &str, style: Option<Style>) -> String {
        match style {
            Some(s) if enabled => format!("\x1b[{}m{text}\x1b[0m", s.code()),
            _ => text.to_string(),
        }
    }

    /// Writes `text` and a newline to stdout. A closed pipe (`quiver show rules | head`) is
    /// not an error worth a panic, so write errors are dropped.
    pub fn line(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
    }

    /// A line with one styled part: `label` then `value` in `style`.
    pub fn styled_line(&self, label: &str, value: &str, style: Option<Style>) {
        self.line(&format!(
            "{label}{}",
            self.paint(self.colour_out, value, style)
        ));
    }

    /// `error: message` on stderr, red on a terminal.
    pub fn error(&self, message: &str) {
        let label = self.paint(self.colour_err, "error:", Some(Style::Red));
        let _ = writeln!(std::io::stderr().lock(), "{label} {message}");
    }

    /// A note for people on stderr (e.g. "no rules"), so stdout stays empty for scripts.
    pub fn note(&self, message: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{message}");
    }

    /// The server's answer unchanged on stdout, with a final newline.
    pub fn raw_json(&self, body: &[u8]) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(body);
        if !body.ends_with(b"\n") {
            let _ = out.write_all(b"\n");
        }
    }

    /// A server's text answer: as is, or as `{"message": text}` under `--json`.
    pub fn message(&self, text: &str) {
        let text = text.trim_end();
        if self.json {
            self.line(&serde_json::json!({ "message": text }).to_string());
        } else {
            self.line(text);
        }
    }

    /// `value` as indented JSON.
    pub fn pretty_json(&self, value: &Value) {
        self.line(&serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
    }

    /// A table: a bold header row, then `rows`, columns left-aligned to their widest cell.
    pub fn table(&self, headers: &[&str], rows: &[Vec<Cell>]) {
        let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
        for row in rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.text.chars().count());
                }
            }
        }
        let header: Vec<Cell> = headers
            .iter()
            .map(|h| Cell::styled(*h, Some(Style::Bold)))
            .collect();
        for row in std::iter::once(&header).chain(rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let last = i + 1 == row.len();
                line.push_str(&self.paint(self.colour_out, &cell.text, cell.style));
                if !last {
                    let pad = widths.get(i).copied().unwrap_or(0) - cell.text.chars().count();
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            // An empty last cell would leave the padding of the one before it.
            self.line(line.trim_end());
        }
    }

    /// Awaits `work`, showing a spinner with `label` and the seconds waited on stderr when it
    /// is a terminal; the spinner's line is cleared afterwards.
    pub async fn waiting<T>(&self, label: &str, work: impl Future<Output = T>) -> T {
        if !self.spinner {
            return work.await;
        }
        const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(120));
        let mut frame = 0;
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => {
                    let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
                    return done;
                }
                _ = tick.tick() => {
                    let _ = write!(
                        std::io::stderr().lock(),
                        "\r{} {label} ({}s)",
                        FRAMES[frame % FRAMES.len()],
                        started.elapsed().as_secs()
                    );
                    frame += 1;
                }
            }
        }
    }
}
