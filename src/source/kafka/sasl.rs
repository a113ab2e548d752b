//! SASL for Kafka: PLAIN and SCRAM-SHA-256/512 (RFC 5802, RFC 7677);
//! Amazon MSK IAM is `msk_iam.rs`.
//!
//! Input: the user and password from the config. Output: the client's
//! messages of the exchange. Failure: a server message that is malformed,
//! whose nonce is not ours, or whose signature does not prove it knows the
//! password is an error string naming what is wrong (never the password).

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScramHash {
    Sha256,
    Sha512,
}

#[derive(Clone)]
pub enum Sasl {
    Plain { user: String, password: String },
    Scram { hash: ScramHash, user: String, password: String },
    /// OAUTHBEARER with an MSK IAM token.
    MskIam(super::msk_iam::MskIam),
}

impl Sasl {
    pub fn mechanism(&self) -> &'static str {
        match self {
            Sasl::Plain { .. } => "PLAIN",
            Sasl::Scram { hash: ScramHash::Sha256, .. } => "SCRAM-SHA-256",
            Sasl::Scram { hash: ScramHash::Sha512, .. } => "SCRAM-SHA-512",
            Sasl::MskIam(_) => "OAUTHBEARER",
        }
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn hmac(hash: ScramHash, key: &[u8], data: &[u8]) -> Vec<u8> {
    match hash {
        ScramHash::Sha256 => {
            let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        ScramHash::Sha512 => {
            let mut m = <Hmac<Sha512> as KeyInit>::new_from_slice(key).expect("any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
    }
}

fn digest(hash: ScramHash, data: &[u8]) -> Vec<u8> {
    match hash {
        ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        ScramHash::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// Hi() of RFC 5802: PBKDF2 with HMAC, one block.
fn hi(hash: ScramHash, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut u = hmac(hash, password, &[salt, &1u32.to_be_bytes()].concat());
    let mut out = u.clone();
    for _ in 1..iterations {
        u = hmac(hash, password, &u);
        out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
    }
    out
}

/// SASLprep is not applied: user names are escaped as RFC 5802 asks
/// (`=` → `=3D`, `,` → `=2C`); passwords are used as UTF-8 bytes.
fn escape(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

pub struct Scram {
    hash: ScramHash,
    password: String,
    nonce: String,
    first_bare: String,
    server_signature: Vec<u8>,
}

impl Scram {
    pub fn new(hash: ScramHash, user: &str, password: &str) -> Scram {
        let raw = [*uuid::Uuid::new_v4().as_bytes(), *uuid::Uuid::new_v4().as_bytes()].concat();
        Scram::with_nonce(hash, user, password, &b64().encode(raw))
    }

    fn with_nonce(hash: ScramHash, user: &str, password: &str, nonce: &str) -> Scram {
        let first_bare = format!("n={},r={nonce}", escape(user));
        Scram { hash, password: password.to_string(), nonce: nonce.to_string(), first_bare, server_signature: Vec::new() }
    }

    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.first_bare).into_bytes()
    }

    /// The client's final message, from the server's first.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let sf = std::str::from_utf8(server_first).map_err(|_| "the server's first message is not UTF-8".to_string())?;
        let attr = |k: &str| sf.split(',').find_map(|p| p.strip_prefix(k).and_then(|v| v.strip_prefix('='))).map(str::to_string);
        let nonce = attr("r").ok_or("the server's first message has no nonce")?;
        if !nonce.starts_with(&self.nonce) {
            return Err("the server's nonce does not extend ours".into());
        }
        let salt = b64().decode(attr("s").ok_or("the server's first message has no salt")?).map_err(|_| "the server's salt is not base64".to_string())?;
        let iterations: u32 = attr("i").ok_or("no iteration count")?.parse().map_err(|_| "the iteration count is not a number".to_string())?;
        if !(1..=1_000_000).contains(&iterations) {
            return Err(format!("iteration count {iterations} out of range"));
        }
        let salted = hi(self.hash, self.password.as_bytes(), &salt, iterations);
        let client_key = hmac(self.hash, &salted, b"Client Key");
        let stored_key = digest(self.hash, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{sf},{without_proof}", self.first_bare);
        let signature = hmac(self.hash, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let server_key = hmac(self.hash, &salted, b"Server Key");
        self.server_signature = hmac(self.hash, &server_key, auth_message.as_bytes());
        Ok(format!("{without_proof},p={}", b64().encode(proof)).into_bytes())
    }

    /// Checks the server's final message proves it knows the password.
    pub fn verify_server(&self, server_final: &[u8]) -> Result<(), String> {
        let s = std::str::from_utf8(server_final).map_err(|_| "the server's final message is not UTF-8".to_string())?;
        if let Some(e) = s.strip_prefix("e=") {
            return Err(format!("the server says: {e}"));
        }
        let v = s.split(',').find_map(|p| p.strip_prefix("v=")).ok_or("the server's final message has no signature")?;
        let v = b64().decode(v).map_err(|_| "the server's signature is not base64".to_string())?;
        if v != self.server_signature {
            return Err("the server's signature is wrong: it does not know the password".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3's example exchange, byte for byte.
    #[test]
    fn scram_sha_256_matches_rfc_7677() {
        let mut s = Scram::with_nonce(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(s.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let last = s.client_final(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096").unwrap();
        assert_eq!(
            String::from_utf8(last).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        s.verify_server(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").unwrap();
        assert!(s.verify_server(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").is_err());
    }

    /// RFC 5802 §5's SHA-1 example shares Hi with PBKDF2; SHA-512 is
    /// checked against the pbkdf2 test vector of RFC 6070's shape
    /// (password/salt, one iteration = one HMAC).
    #[test]
    fn hi_of_one_iteration_is_one_hmac() {
        let h = hi(ScramHash::Sha512, b"password", b"salt", 1);
        assert_eq!(h, hmac(ScramHash::Sha512, b"password", b"salt\0\0\0\x01"));
        assert_eq!(hex::encode(&hi(ScramHash::Sha256, b"password", b"salt", 2)), "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43");
    }

    #[test]
    fn a_foreign_nonce_is_refused() {
        let mut s = Scram::with_nonce(ScramHash::Sha512, "u,=", "p", "abc");
        assert_eq!(s.client_first(), b"n,,n=u=2C=3D,r=abc");
        assert!(s.client_final(b"r=xyz,s=AAAA,i=4096").unwrap_err().contains("nonce"));
    }
}
