//! Secrets never leave the server: passwords and tokens in rule actions, stream options and
//! plugin metadata, and the password of a URL (`mysql://user:pass@host`), are shown as
//! `******` in every REST answer and log line. The catalog stores them as given and the engine
//! uses them as given; only what is shown is masked.
//!
//! A key is secret when its name ends, case-insensitively, in one of [`SECRET_SUFFIXES`]
//! (`password`, `mqttPassword`, `token`, `accessToken`, `clientSecret`, ...).

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde_json::Value;

/// What a secret is shown as (eKuiper's mask).
pub const MASK: &str = "******";

/// Key name endings that mark a secret.
pub const SECRET_SUFFIXES: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "token",
    "secret",
    "apikey",
    "privatekeyraw",
];

/// Whether a property named `key` holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_SUFFIXES.iter().any(|s| key.ends_with(s))
}

/// `scheme://user:password@`: the password is group 2.
static URL_CREDENTIALS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)([a-z][a-z0-9+.\-]*://[^:/?#@\s"'<>]*:)([^@/?#\s"'<>]+)@"#)
        .expect("valid regex")
});

/// `password=x`, `"token": "x"`, `secret: x`: the value is group 2 (quoted or bare).
static SECRET_PAIR: LazyLock<Regex> = LazyLock::new(|| {
    let keys = SECRET_SUFFIXES.join("|");
    Regex::new(&format!(
        r#"(?i)(\b[a-z0-9_.\-]*(?:{keys})"?\s*[:=]\s*)("(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;&}}\]"'\\]+)"#
    ))
    .expect("valid regex")
});

/// Masks the secrets in free text: URL passwords and `key=value` / `"key": "value"` pairs of
/// secret keys. Used for log lines, status and error messages.
pub fn mask_text(text: &str) -> Cow<'_, str> {
    // Most log lines name neither a URL nor a secret key: skip the regexes.
    if !text.contains("://") && !is_secret_word_in(text) {
        return Cow::Borrowed(text);
    }
    let urls = URL_CREDENTIALS.replace_all(text, |c: &Captures| format!("{}{MASK}@", &c[1]));
    let pairs = match SECRET_PAIR.replace_all(&urls, |c: &Captures| {
        let value = &c[2];
        let masked = match value.as_bytes()[0] {
            q @ (b'"' | b'\'') => format!("{}{MASK}{}", q as char, q as char),
            _ => MASK.to_string(),
        };
        format!("{}{masked}", &c[1])
    }) {
        Cow::Borrowed(_) => None,
        Cow::Owned(s) => Some(s),
    };
    match pairs {
        Some(s) => Cow::Owned(s),
        None => urls,
    }
}

fn is_secret_word_in(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    SECRET_SUFFIXES.iter().any(|s| lower.contains(s))
}

/// Compiles the patterns now, so that the first log line that needs them is not slowed.
pub fn warm_up() {
    LazyLock::force(&URL_CREDENTIALS);
    LazyLock::force(&SECRET_PAIR);
}

/// Masks a JSON value in place: every value under a secret key becomes `******` (objects and
/// arrays under such a key too), and every string has its URL passwords masked.
pub fn mask_value(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_key(k) && !v.is_null() && v.as_str() != Some("") {
                    *v = Value::String(MASK.into());
                } else {
                    mask_value(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_value),
        Value::String(s) => {
            if let Cow::Owned(masked) = mask_text(s) {
                *s = masked;
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// A JSON document as text with its secrets masked: unchanged (same bytes) when it holds none,
/// re-serialized otherwise; text that is not JSON goes through [`mask_text`].
pub fn mask_json_text(raw: &str) -> Cow<'_, str> {
    let Ok(parsed) = serde_json::from_str::<Value>(raw) else {
        return mask_text(raw);
    };
    let mut masked = parsed.clone();
    mask_value(&mut masked);
    if masked == parsed {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(masked.to_string())
    }
}

/// A document sent back after a `GET` (`PUT /rules/{id}` with what `GET /rules/{id}` showed)
/// holds `******` where the stored one has the secret: puts the stored secrets back, so that
/// editing a rule never replaces a password with the mask. `None` when nothing was restored.
pub fn unmask_json(new_raw: &str, stored_raw: &str) -> Option<String> {
    fn restore(new: &mut Value, old: &Value) -> bool {
        match (new, old) {
            (Value::Object(n), Value::Object(o)) => {
                let mut changed = false;
                for (k, v) in n.iter_mut() {
                    if let Some(ov) = o.get(k) {
                        if is_secret_key(k) && v.as_str() == Some(MASK) {
                            *v = ov.clone();
                            changed = true;
                        } else {
                            changed |= restore(v, ov);
                        }
                    }
                }
                changed
            }
            (Value::Array(n), Value::Array(o)) => n
                .iter_mut()
                .zip(o)
                .fold(false, |changed, (n, o)| restore(n, o) | changed),
            (Value::String(n), Value::String(o)) if n.contains(MASK) && *n == mask_text(o) => {
                n.clone_from(o);
                true
            }
            _ => false,
        }
    }
    if !new_raw.contains(MASK) {
        return None;
    }
    let mut new: Value = serde_json::from_str(new_raw).ok()?;
    let old: Value = serde_json::from_str(stored_raw).ok()?;
    restore(&mut new, &old).then(|| new.to_string())
}

/// The secret strings of a JSON document (the values under secret keys, and URL passwords),
/// so that an error message echoing one can be scrubbed with [`scrub`].
pub fn secret_values(raw: &str) -> Vec<String> {
    fn walk(v: &Value, secret: bool, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => map
                .iter()
                .for_each(|(k, v)| walk(v, secret || is_secret_key(k), out)),
            Value::Array(items) => items.iter().for_each(|v| walk(v, secret, out)),
            Value::String(s) => {
                if secret && !s.is_empty() {
                    out.push(s.clone());
                }
                out.extend(URL_CREDENTIALS.captures_iter(s).map(|c| c[2].to_string()));
            }
            Value::Number(n) if secret => out.push(n.to_string()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_json::from_str::<Value>(raw) {
        walk(&v, false, &mut out);
    }
    // Longest first, so a secret that contains another is replaced whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// `text` with each of `secrets` replaced by `******`, then [`mask_text`].
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    mask_text(&out).into_owned()
}

/// An `io::Write` that masks each write with [`mask_text`]: the log writer. tracing's fmt layer
/// writes one whole formatted event per `write_all`, so a secret is never split across writes.
#[derive(Debug)]
pub struct MaskingWriter<W>(pub W);

impl<W: std::io::Write> std::io::Write for MaskingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(mask_text(text).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_keys_by_suffix_case_insensitively() {
        for k in [
            "password",
            "Password",
            "mqttPassword",
            "passwd",
            "token",
            "accessToken",
            "clientSecret",
            "SECRET",
            "apiKey",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "user",
            "username",
            "key",
            "topic",
            "server",
            "tokenizer",
            "privateKeyPath",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn url_passwords_are_masked_and_users_kept() {
        assert_eq!(
            mask_text("mysql://user:pass@host:3306/db"),
            "mysql://user:******@host:3306/db"
        );
        assert_eq!(
            mask_text("cannot connect to tcp://u:p%40ss@broker:1883: refused"),
            "cannot connect to tcp://u:******@broker:1883: refused"
        );
        // No password, or no credentials at all: unchanged, and not copied.
        for plain in [
            "mysql://root@127.0.0.1:3306/test",
            "tcp://127.0.0.1:1883",
            "a:b@c",
        ] {
            assert!(matches!(mask_text(plain), Cow::Borrowed(_)), "{plain}");
        }
    }

    #[test]
    fn secret_pairs_in_text_are_masked() {
        assert_eq!(
            mask_text(r#"props {"password":"hunter2","user":"u"}"#),
            r#"props {"password":"******","user":"u"}"#
        );
        assert_eq!(
            mask_text("login failed: password=hunter2, user=u"),
            "login failed: password=******, user=u"
        );
        assert_eq!(mask_text("token: 'abc def'"), "token: '******'");
        assert_eq!(mask_text("a token expired"), "a token expired");
    }

    #[test]
    fn json_values_under_secret_keys_and_urls_are_masked() {
        let mut rule = json!({
            "id": "r",
            "sql": "SELECT * FROM demo",
            "actions": [
                {"mqtt": {"server": "tcp://127.0.0.1:1883", "username": "u", "password": "p1", "Token": 42}},
                {"sql": {"url": "mysql://root:p2@127.0.0.1:3306/test", "table": "t", "clientSecret": {"a": 1}}},
                {"rest": {"headers": {"X-Api-Token": "p3"}, "password": ""}}
            ]
        });
        mask_value(&mut rule);
        assert_eq!(
            rule["actions"],
            json!([
                {"mqtt": {"server": "tcp://127.0.0.1:1883", "username": "u", "password": MASK, "Token": MASK}},
                {"sql": {"url": "mysql://root:******@127.0.0.1:3306/test", "table": "t", "clientSecret": MASK}},
                {"rest": {"headers": {"X-Api-Token": MASK}, "password": ""}}
            ])
        );
    }

    #[test]
    fn json_text_without_secrets_keeps_its_bytes() {
        let raw = r#"{"id": "r", "sql": "SELECT 1", "actions": [{"log": {}}]}"#;
        assert!(matches!(mask_json_text(raw), Cow::Borrowed(_)));
        let secret = r#"{"id": "r", "actions": [{"x": {"password": "p"}}]}"#;
        assert_eq!(
            mask_json_text(secret),
            r#"{"actions":[{"x":{"password":"******"}}],"id":"r"}"#
        );
    }

    #[test]
    fn a_masked_document_sent_back_keeps_the_stored_secrets() {
        let stored =
            r#"{"actions": [{"x": {"password": "p1", "url": "mysql://u:p2@h/db", "topic": "a"}}]}"#;
        let shown = mask_json_text(stored).into_owned();
        let edited = shown.replace("\"a\"", "\"b\"");
        let restored: Value = serde_json::from_str(&unmask_json(&edited, stored).unwrap()).unwrap();
        assert_eq!(
            restored,
            json!({"actions": [{"x": {"password": "p1", "url": "mysql://u:p2@h/db", "topic": "b"}}]})
        );
        // A new password, or a document without masks, is taken as sent.
        let new = r#"{"actions": [{"x": {"password": "p3"}}]}"#;
        assert_eq!(unmask_json(new, stored), None);
    }

    #[test]
    fn scrub_removes_echoed_secret_values() {
        let raw = r#"{"actions": [{"x": {"password": "hunter2", "url": "mysql://u:pw9@h/db"}}]}"#;
        let secrets = secret_values(raw);
        assert_eq!(secrets, vec!["hunter2".to_string(), "pw9".to_string()]);
        assert_eq!(
            scrub(
                r#"invalid type: string "hunter2", expected a map"#,
                &secrets
            ),
            r#"invalid type: string "******", expected a map"#
        );
    }

    #[test]
    fn the_log_writer_masks_each_line() {
        let mut out = MaskingWriter(Vec::new());
        std::io::Write::write_all(&mut out, b"sink failed: mysql://u:pw@h/db\n").unwrap();
        assert_eq!(
            String::from_utf8(out.0).unwrap(),
            "sink failed: mysql://u:******@h/db\n"
        );
    }
}
