//! The client side of SASL SCRAM (RFC 5802, with the SHA-2 hashes of RFC 7677), as Kafka
//! brokers run it over two `SaslAuthenticate` round trips: the client's first message (user
//! name and a fresh nonce), the server's challenge (its nonce, salt and iteration count), the
//! client's proof, and the server's signature, which the client checks so that a server that
//! does not know the password cannot pass for the broker.
//!
//! Channel binding is not used (`n,,`): TLS, when configured, is below the Kafka protocol.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Mac, SimpleHmac};
use sha2::{Digest, Sha256, Sha512};

/// The SCRAM hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512 (eKuiper's `saslAuthType: scram`).
    Sha512,
}

impl ScramHash {
    /// The SASL mechanism name the broker is asked for.
    pub fn mechanism(self) -> &'static str {
        match self {
            ScramHash::Sha256 => "SCRAM-SHA-256",
            ScramHash::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
            ScramHash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .expect("HMAC takes keys of any length");
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            ScramHash::Sha256 => run::<SimpleHmac<Sha256>>(key, parts),
            ScramHash::Sha512 => run::<SimpleHmac<Sha512>>(key, parts),
        }
    }

    /// RFC 5802's `Hi`: PBKDF2 with HMAC as the PRF and one output block; what a broker
    /// derives its stored credential from.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut u = self.hmac(password, &[salt, &1u32.to_be_bytes()]);
        let mut out = u.clone();
        for _ in 1..iterations {
            u = self.hmac(password, &[&u]);
            out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
        }
        out
    }
}

/// The most iterations a server may ask for: each costs two HMACs, and a hostile broker
/// could otherwise make a connection spin for minutes (Kafka's own limit is 16,384).
const MAX_ITERATIONS: u32 = 65_536;

/// One SCRAM login in progress.
pub struct ScramClient {
    hash: ScramHash,
    password: String,
    nonce: String,
    /// `n=<user>,r=<nonce>`: part of what both sides sign.
    first_bare: String,
    /// The server's signature, known once the proof is made.
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// Starts a login of `user` with `password`, using `nonce` (printable, no comma).
    pub fn new(hash: ScramHash, user: &str, password: &str, nonce: &str) -> ScramClient {
        // RFC 5802: "=" and "," in the user name are escaped; the password is prepared with
        // SASLprep as the server prepared it when it stored the credential (unprepared when
        // it holds characters SASLprep refuses, as other clients do).
        let user = user.replace('=', "=3D").replace(',', "=2C");
        let password = stringprep::saslprep(password)
            .map(|p| p.into_owned())
            .unwrap_or_else(|_| password.to_string());
        ScramClient {
            hash,
            password,
            nonce: nonce.to_string(),
            first_bare: format!("n={user},r={nonce}"),
            server_signature: None,
        }
    }

    /// A fresh random nonce: 24 bytes from the OS generator, base64.
    pub fn random_nonce() -> String {
        let mut bytes = [0u8; 24];
        bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        bytes[16..].copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..8]);
        STANDARD.encode(bytes)
    }

    /// The client's first message.
    pub fn first_message(&self) -> String {
        format!("n,,{}", self.first_bare)
    }

    /// Answers the server's first message with the client's proof.
    pub fn final_message(&mut self, server_first: &[u8]) -> Result<String, String> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| "the server's SCRAM challenge is not UTF-8".to_string())?;
        if let Some(e) = server_first.strip_prefix("e=") {
            return Err(format!("the server refused the login: {e}"));
        }
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in server_first.split(',') {
            match attr.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v),
                Some(("s=", v)) => salt = Some(v),
                Some(("i=", v)) => iterations = Some(v),
                Some(("m=", _)) => {
                    return Err("the server asks for a SCRAM extension this client lacks".into());
                }
                _ => {}
            }
        }
        let challenge = || format!("malformed SCRAM challenge from the server: {server_first}");
        let nonce = nonce.ok_or_else(challenge)?;
        // The server extends the client's nonce; anything else is a replay or a confusion.
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("the server's SCRAM nonce does not extend the client's".into());
        }
        let salt = STANDARD
            .decode(salt.ok_or_else(challenge)?)
            .map_err(|_| challenge())?;
        let iterations: u32 = iterations
            .ok_or_else(challenge)?
            .parse()
            .map_err(|_| challenge())?;
        if !(1..=MAX_ITERATIONS).contains(&iterations) {
            return Err(format!(
                "the server asks for {iterations} SCRAM iterations; at most {MAX_ITERATIONS} \
                 are accepted"
            ));
        }
        let salted = self
            .hash
            .salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = self.hash.hmac(&salted, &[b"Client Key"]);
        let stored_key = self.hash.hash(&client_key);
        // "biws" is base64("n,,"): no channel binding, no authorization id.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let signature = self.hash.hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = self.hash.hmac(&salted, &[b"Server Key"]);
        self.server_signature = Some(self.hash.hmac(&server_key, &[auth_message.as_bytes()]));
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)))
    }

    /// Checks the server's final message: it must prove it knows the credential.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| "the server's SCRAM answer is not UTF-8".to_string())?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(format!("the server refused the login: {e}"));
        }
        let expected = self
            .server_signature
            .as_ref()
            .ok_or("the SCRAM exchange is out of order")?;
        let given = text
            .split(',')
            .find_map(|a| a.strip_prefix("v="))
            .and_then(|v| STANDARD.decode(v).ok())
            .ok_or_else(|| format!("malformed SCRAM answer from the server: {text}"))?;
        if &given != expected {
            return Err(
                "the server's SCRAM signature is wrong: it does not know the \
                        credential (not the broker expected?)"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677, section 3: the SCRAM-SHA-256 example exchange.
    #[test]
    fn rfc_7677_example() {
        let mut c = ScramClient::new(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(c.first_message(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        assert_eq!(
            c.final_message(server_first.as_bytes()).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(c.verify(b"v=AAAA").unwrap_err().contains("signature"));
        assert!(
            c.verify(b"e=invalid-proof")
                .unwrap_err()
                .contains("invalid-proof")
        );
    }

    #[test]
    fn refuses_bad_challenges() {
        let mut c = ScramClient::new(ScramHash::Sha512, "u,=", "p", "abc");
        assert_eq!(c.first_message(), "n,,n=u=2C=3D,r=abc");
        let bad = |c: &mut ScramClient, s: &str| c.final_message(s.as_bytes()).unwrap_err();
        assert!(bad(&mut c, "r=xyz,s=AAAA,i=4096").contains("nonce"));
        assert!(bad(&mut c, "r=abc,s=AAAA,i=4096").contains("nonce"));
        assert!(bad(&mut c, "r=abcd,s=AAAA,i=99999999").contains("iterations"));
        assert!(bad(&mut c, "r=abcd,i=4096").contains("malformed"));
        assert!(bad(&mut c, "e=unknown-user").contains("unknown-user"));
        assert!(c.verify(b"v=AAAA").unwrap_err().contains("out of order"));
        assert_ne!(ScramClient::random_nonce(), ScramClient::random_nonce());
    }
}
