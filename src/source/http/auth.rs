//! Who may call the door: SigV4 access keys, basic-auth users and bearer
//! tokens from the config.
//!
//! Input: a request's headers (and, for SigV4, its method, path and body).
//! Output: the caller's name, or [`Denied`] with the answer to give. Secrets
//! are held as given (SigV4 needs the secret key) or as SHA-256 hashes
//! (passwords, tokens); every comparison is in constant time, and an
//! unknown user takes the same path as a wrong password. Nothing here is
//! logged. With `auth = "none"` (which must be set explicitly) every caller
//! is let in.

use super::sigv4;
use axum::http::HeaderMap;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A secret that never shows in logs or debug output.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// No credentials asked for (`auth = "none"`).
    pub none: bool,
    /// SigV4 access key id → secret access key.
    pub keys: Vec<(String, Secret)>,
    /// Basic-auth user → SHA-256 of the password.
    pub users: Vec<(String, [u8; 32])>,
    /// SHA-256 of each bearer token.
    pub tokens: Vec<[u8; 32]>,
}

/// Why a caller is not let in: (HTTP status, AWS error code, message).
#[derive(Debug)]
pub struct Denied {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl From<sigv4::SigError> for Denied {
    fn from(e: sigv4::SigError) -> Denied {
        let status = if e == sigv4::SigError::Missing { 403 } else { 400 };
        Denied { status, code: e.code(), message: e.to_string() }
    }
}

/// SHA-256 of a secret, as the config stores passwords and tokens.
pub fn hash(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// Parses a 64-digit hex SHA-256.
pub fn parse_hash(hex_text: &str) -> Option<[u8; 32]> {
    let v = hex::decode(hex_text.trim()).ok()?;
    v.try_into().ok()
}

impl AuthConfig {
    /// The SigV4 signer of a request to `service`, if it signed right.
    pub fn sigv4(&self, req: &sigv4::Request, region: &str, service: &str) -> Result<String, Denied> {
        if self.none {
            return Ok("anonymous".into());
        }
        let now = crate::source::now_ms() / 1000;
        let secret_of = |id: &str| {
            let mut found = None;
            for (k, s) in &self.keys {
                if bool::from(k.as_bytes().ct_eq(id.as_bytes())) {
                    found = Some(s.expose().to_string());
                }
            }
            found
        };
        Ok(sigv4::verify(req, region, service, now, secret_of)?)
    }

    /// The caller of `/v1/events`: basic auth, a bearer token, or SigV4
    /// (service `lakehose`).
    pub fn events(&self, headers: &HeaderMap, req: &sigv4::Request, region: &str) -> Result<String, Denied> {
        if self.none {
            return Ok("anonymous".into());
        }
        let denied = |message: &str| Denied { status: 401, code: "Unauthorized", message: message.to_string() };
        let auth = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(|| denied("credentials required: HTTP basic auth or a bearer token"))?;
        if let Some(b64) = auth.strip_prefix("Basic ") {
            let pair = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok().and_then(|p| String::from_utf8(p).ok()).ok_or_else(|| denied("malformed basic credentials"))?;
            let (user, password) = pair.split_once(':').ok_or_else(|| denied("malformed basic credentials"))?;
            let given = hash(password.as_bytes());
            // the same work whether the user exists or not
            let mut ok = subtle::Choice::from(0);
            for (name, stored) in &self.users {
                ok |= name.as_bytes().ct_eq(user.as_bytes()) & stored.ct_eq(&given);
            }
            return if bool::from(ok) { Ok(user.to_string()) } else { Err(denied("wrong user or password")) };
        }
        if let Some(token) = auth.strip_prefix("Bearer ") {
            let given = hash(token.trim().as_bytes());
            let mut ok = subtle::Choice::from(0);
            for stored in &self.tokens {
                ok |= stored.ct_eq(&given);
            }
            return if bool::from(ok) { Ok("bearer".into()) } else { Err(denied("unknown token")) };
        }
        if auth.starts_with("AWS4-HMAC-SHA256 ") {
            return self.sigv4(req, region, "lakehose").map_err(|d| Denied { status: 401, ..d });
        }
        Err(denied("unsupported authorization scheme: use Basic, Bearer or AWS4-HMAC-SHA256"))
    }
}
