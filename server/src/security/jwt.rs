//! eKuiper's JWT authentication: RS256 tokens signed by the caller's private key, checked
//! against the public key named by the token's `iss`.
//!
//! The public keys are PEM files in one folder (`<data-dir>/mgmt`; eKuiper uses `etc/mgmt`),
//! read once at start: a key added later is seen after a restart. A token is accepted when
//! - its header says `"alg": "RS256"` (anything else, `none` and HMAC included, is refused:
//!   the key decides the algorithm, never the token),
//! - `iss` names a key file of the folder (compared case-insensitively, as eKuiper does) and the
//!   signature verifies with that key,
//! - `aud` is, or contains, `eKuiper`,
//! - `exp`, when present, is in the future and `nbf`, when present, is not.
//!
//! Error messages never contain the token.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use rsa::RsaPublicKey;
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey as _;
use rsa::signature::Verifier as _;
use serde_json::Value;
use sha2::Sha256;

/// The audience every token must name.
pub const AUDIENCE: &str = "eKuiper";

/// Longest token looked at (a 4096-bit RS256 token with a few claims is under 1 KiB).
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts of JSON.
    #[error("malformed jwt ({0})")]
    Malformed(&'static str),
    /// Not RS256.
    #[error("token algorithm must be RS256, not \"{0}\"")]
    Algorithm(String),
    /// No `iss`.
    #[error("issuer field not exist in jwt payload; \"iss\" must name a public key file")]
    MissingIssuer,
    /// `iss` names no key file.
    #[error("no public key named \"{0}\" in the mgmt folder")]
    UnknownKey(String),
    /// The signature does not verify with the named key.
    #[error("token signature does not verify with key \"{0}\"")]
    Signature(String),
    /// `aud` lacks `eKuiper`.
    #[error("audience field should contain eKuiper")]
    Audience,
    /// `exp` has passed.
    #[error("token is expired")]
    Expired,
    /// `nbf` is still ahead.
    #[error("token is not valid yet")]
    NotYetValid,
}

/// The public keys of the mgmt folder, by lowercase file name.
pub struct KeyRing {
    dir: PathBuf,
    keys: HashMap<String, (String, VerifyingKey<Sha256>)>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.keys.values().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        f.debug_struct("KeyRing")
            .field("dir", &self.dir)
            .field("keys", &names)
            .finish()
    }
}

impl KeyRing {
    /// Reads every RSA public key (PEM, `PUBLIC KEY` or `RSA PUBLIC KEY`) in `dir`, creating the
    /// folder when it is missing. Files that are not such keys are skipped with a warning.
    pub fn load(dir: &Path) -> anyhow::Result<KeyRing> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the public key folder {}", dir.display()))?;
        let mut keys = HashMap::new();
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let path = entry.path();
            if !path.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let pem = match std::fs::read_to_string(&path) {
                Ok(pem) => pem,
                Err(e) => {
                    tracing::warn!("skipping {}: {e}", path.display());
                    continue;
                }
            };
            match parse_public_key(&pem) {
                Some(key) => {
                    keys.insert(name.to_lowercase(), (name, VerifyingKey::new(key)));
                }
                None => tracing::warn!(
                    "skipping {}: not an RSA public key in PEM form",
                    path.display()
                ),
            }
        }
        Ok(KeyRing {
            dir: dir.to_path_buf(),
            keys,
        })
    }

    /// How many keys were read.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the folder held no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The folder the keys come from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks `token` (without `Bearer `) at `now` (seconds since the epoch); returns the
    /// issuer's key file name.
    pub fn verify(&self, token: &str, now: f64) -> Result<&str, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::Malformed("too long"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("expected three dot-separated parts"));
        };
        let (header_len, payload_len) = (header.len(), payload.len());
        let header = json_part(header)?;
        match header.get("alg").and_then(Value::as_str) {
            Some("RS256") => {}
            Some(other) => return Err(JwtError::Algorithm(other.chars().take(16).collect())),
            None => return Err(JwtError::Malformed("the header has no \"alg\"")),
        }
        let claims = json_part(payload)?;
        let iss = match claims.get("iss") {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => return Err(JwtError::MissingIssuer),
        };
        let (name, key) = self
            .keys
            .get(&iss.to_lowercase())
            .ok_or_else(|| JwtError::UnknownKey(iss.chars().take(64).collect()))?;
        let signature = b64(signature)?;
        let signature = Signature::try_from(signature.as_slice())
            .map_err(|_| JwtError::Signature(name.clone()))?;
        // The signed bytes are the first two parts with their dot.
        let signed = &token[..header_len + 1 + payload_len];
        key.verify(signed.as_bytes(), &signature)
            .map_err(|_| JwtError::Signature(name.clone()))?;
        // Claims are judged only once the signature holds.
        let audience_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == AUDIENCE,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(AUDIENCE)),
            _ => false,
        };
        if !audience_ok {
            return Err(JwtError::Audience);
        }
        if let Some(exp) = numeric_claim(&claims, "exp")?
            && now >= exp
        {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = numeric_claim(&claims, "nbf")?
            && now < nbf
        {
            return Err(JwtError::NotYetValid);
        }
        Ok(name.as_str())
    }
}

fn parse_public_key(pem: &str) -> Option<RsaPublicKey> {
    RsaPublicKey::from_public_key_pem(pem.trim())
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem.trim()))
        .ok()
}

fn b64(part: &str) -> Result<Vec<u8>, JwtError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| JwtError::Malformed("a part is not base64url"))
}

fn json_part(part: &str) -> Result<serde_json::Map<String, Value>, JwtError> {
    match serde_json::from_slice(&b64(part)?) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Malformed("a part is not a JSON object")),
    }
}

/// A NumericDate claim (seconds, possibly fractional); present but not a number is malformed.
fn numeric_claim(
    claims: &serde_json::Map<String, Value>,
    name: &'static str,
) -> Result<Option<f64>, JwtError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or(JwtError::Malformed("exp and nbf must be numbers")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing {
            dir: PathBuf::from("mgmt"),
            keys: HashMap::new(),
        }
    }

    fn part(v: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    }

    #[test]
    fn refuses_other_algorithms_before_looking_for_a_key() {
        for alg in ["none", "HS256", "RS512"] {
            let token = format!(
                "{}.{}.",
                part(&format!(r#"{{"alg":"{alg}"}}"#)),
                part(r#"{"iss":"k.pub","aud":"eKuiper"}"#)
            );
            assert_eq!(
                ring().verify(&token, 0.0),
                Err(JwtError::Algorithm(alg.into()))
            );
        }
    }

    #[test]
    fn refuses_malformed_tokens_and_unknown_issuers() {
        assert!(matches!(
            ring().verify("abc", 0.0),
            Err(JwtError::Malformed(_))
        ));
        assert!(matches!(
            ring().verify("a.b.c.d", 0.0),
            Err(JwtError::Malformed(_))
        ));
        let header = part(r#"{"alg":"RS256","typ":"JWT"}"#);
        let no_iss = format!("{header}.{}.AAAA", part(r#"{"aud":"eKuiper"}"#));
        assert_eq!(ring().verify(&no_iss, 0.0), Err(JwtError::MissingIssuer));
        let unknown = format!("{header}.{}.AAAA", part(r#"{"iss":"nope.pub"}"#));
        assert_eq!(
            ring().verify(&unknown, 0.0),
            Err(JwtError::UnknownKey("nope.pub".into()))
        );
    }
}
