//! One connection to a Kafka broker: framing, version negotiation, TLS and
//! SASL, on top of the `kafka-protocol` crate's message codecs.
//!
//! Input: a broker address and the connection settings. Output: typed
//! responses to typed requests, each sent at the highest version both
//! this client and the broker speak (ApiVersions at connect). Failure:
//! [`WireError`] — the broker is unreachable or closed the connection,
//! answered garbage, timed out, does not speak a version we need, or
//! refused the credentials. A connection that failed is dropped by its
//! owner and opened again; nothing here retries.

use super::sasl::{Sasl, Scram};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("broker {addr}: {message}")]
    Io { addr: String, message: String },
    #[error("broker {addr}: cannot {what}: {message}")]
    Codec { addr: String, what: &'static str, message: String },
    #[error("broker {addr}: no answer to {api} within {secs}s")]
    Timeout { addr: String, api: &'static str, secs: u64 },
    #[error("broker {addr} speaks {api} versions {min}..={max}; lakehose needs {need_min}..={need_max}")]
    Version { addr: String, api: &'static str, min: i16, max: i16, need_min: i16, need_max: i16 },
    #[error("broker {addr}: SASL {mechanism}: {message}")]
    Auth { addr: String, mechanism: String, message: String },
}

/// How to reach brokers: TLS and SASL settings shared by every connection.
#[derive(Clone)]
pub struct Settings {
    pub client_id: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<Sasl>,
    pub request_timeout: Duration,
    /// The largest response accepted (a fetch asks for less).
    pub max_response_bytes: usize,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the password
        f.debug_struct("Settings").field("client_id", &self.client_id).field("tls", &self.tls.is_some()).field("sasl", &self.sasl.as_ref().map(|s| s.mechanism())).finish()
    }
}

/// A request this client sends, with its API key and the versions it can use.
pub trait Call: Encodable + HeaderVersion {
    const KEY: ApiKey;
    const NAME: &'static str;
    /// Versions this client encodes correctly (fields it needs exist from `MIN`).
    const MIN: i16;
    const MAX: i16;
    type Response: Decodable + HeaderVersion;
}

macro_rules! call {
    ($req:ty, $resp:ty, $key:ident, $min:expr, $max:expr) => {
        impl Call for $req {
            const KEY: ApiKey = ApiKey::$key;
            const NAME: &'static str = stringify!($key);
            const MIN: i16 = $min;
            const MAX: i16 = $max;
            type Response = $resp;
        }
    };
}
call!(ApiVersionsRequest, ApiVersionsResponse, ApiVersions, 0, 0);
call!(MetadataRequest, MetadataResponse, Metadata, 1, 12);
call!(FetchRequest, FetchResponse, Fetch, 4, 12);
call!(ListOffsetsRequest, ListOffsetsResponse, ListOffsets, 1, 7);
call!(OffsetCommitRequest, OffsetCommitResponse, OffsetCommit, 2, 8);
call!(FindCoordinatorRequest, FindCoordinatorResponse, FindCoordinator, 1, 3);
call!(SaslHandshakeRequest, SaslHandshakeResponse, SaslHandshake, 1, 1);
call!(SaslAuthenticateRequest, SaslAuthenticateResponse, SaslAuthenticate, 0, 2);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct Conn {
    pub addr: String,
    io: Box<dyn Io>,
    correlation: i32,
    client_id: StrBytes,
    /// API key → the broker's (min, max).
    versions: HashMap<i16, (i16, i16)>,
    timeout: Duration,
    max_response: usize,
    sasl: Option<Sasl>,
    /// When the broker's SASL session ends (SaslAuthenticate v1+'s
    /// session lifetime): the connection re-authenticates before it.
    reauth_at: Option<tokio::time::Instant>,
}

impl Conn {
    /// Connects, negotiates versions and authenticates.
    pub async fn open(addr: &str, s: &Settings) -> Result<Conn, WireError> {
        let io_err = |e: std::io::Error| WireError::Io { addr: addr.to_string(), message: e.to_string() };
        let tcp = tokio::time::timeout(s.request_timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| WireError::Timeout { addr: addr.to_string(), api: "connect", secs: s.request_timeout.as_secs() })?
            .map_err(io_err)?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &s.tls {
            None => Box::new(tcp),
            Some(cfg) => {
                let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr).trim_matches(['[', ']']);
                let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| WireError::Io { addr: addr.to_string(), message: format!("TLS server name: {e}") })?;
                let tls = tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp).await.map_err(|e| WireError::Io { addr: addr.to_string(), message: format!("TLS: {e}") })?;
                Box::new(tls)
            }
        };
        let mut c = Conn {
            addr: addr.to_string(),
            io,
            correlation: 0,
            client_id: StrBytes::from_string(s.client_id.clone()),
            versions: HashMap::new(),
            timeout: s.request_timeout,
            max_response: s.max_response_bytes,
            sasl: s.sasl.clone(),
            reauth_at: None,
        };
        let v = c.send(&ApiVersionsRequest::default(), 0).await?;
        if v.error_code != 0 {
            return Err(c.codec("negotiate versions", format!("ApiVersions error code {}", v.error_code)));
        }
        c.versions = v.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        c.authenticate().await?;
        Ok(c)
    }

    fn codec(&self, what: &'static str, message: String) -> WireError {
        WireError::Codec { addr: self.addr.clone(), what, message }
    }

    /// The version `R` goes out at: the highest both sides speak.
    fn version<R: Call>(&self) -> Result<i16, WireError> {
        let (bmin, bmax) = self.versions.get(&(R::KEY as i16)).copied().unwrap_or((-1, -1));
        let v = bmax.min(R::MAX);
        if v < R::MIN || v < bmin {
            return Err(WireError::Version { addr: self.addr.clone(), api: R::NAME, min: bmin, max: bmax, need_min: R::MIN, need_max: R::MAX });
        }
        Ok(v)
    }

    /// Sends a request and reads its response (re-authenticating first
    /// when the broker's SASL session is about to end, as KIP-368 asks).
    pub async fn call<R: Call>(&mut self, req: &R) -> Result<R::Response, WireError> {
        if self.reauth_at.is_some_and(|t| tokio::time::Instant::now() >= t) {
            self.authenticate().await?;
        }
        self.call_now(req).await
    }

    async fn call_now<R: Call>(&mut self, req: &R) -> Result<R::Response, WireError> {
        let v = self.version::<R>()?;
        self.send(req, v).await
    }

    async fn send<R: Call>(&mut self, req: &R, v: i16) -> Result<R::Response, WireError> {
        let secs = self.timeout.as_secs();
        let addr = self.addr.clone();
        match tokio::time::timeout(self.timeout, self.exchange(req, v)).await {
            Ok(r) => r,
            Err(_) => Err(WireError::Timeout { addr, api: R::NAME, secs }),
        }
    }

    async fn exchange<R: Call>(&mut self, req: &R, v: i16) -> Result<R::Response, WireError> {
        self.correlation = self.correlation.wrapping_add(1);
        let id = self.correlation;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY as i16)
            .with_request_api_version(v)
            .with_correlation_id(id)
            .with_client_id(Some(self.client_id.clone()));
        let mut b = BytesMut::with_capacity(256);
        b.put_i32(0);
        header.encode(&mut b, R::header_version(v)).map_err(|e| self.codec("encode a request header", e.to_string()))?;
        req.encode(&mut b, v).map_err(|e| self.codec("encode a request", e.to_string()))?;
        let len = (b.len() - 4) as i32;
        b[..4].copy_from_slice(&len.to_be_bytes());
        let addr = self.addr.clone();
        let io_err = |e: std::io::Error| WireError::Io { addr: addr.clone(), message: e.to_string() };
        self.io.write_all(&b).await.map_err(io_err)?;
        self.io.flush().await.map_err(io_err)?;
        let mut len = [0u8; 4];
        self.io.read_exact(&mut len).await.map_err(io_err)?;
        let len = i32::from_be_bytes(len);
        if len < 4 || len as usize > self.max_response {
            return Err(self.codec("read a response", format!("frame of {len} bytes (limit {})", self.max_response)));
        }
        let mut body = vec![0u8; len as usize];
        self.io.read_exact(&mut body).await.map_err(io_err)?;
        let mut body = Bytes::from(body);
        let h = ResponseHeader::decode(&mut body, R::Response::header_version(v)).map_err(|e| self.codec("decode a response header", e.to_string()))?;
        if h.correlation_id != id {
            return Err(self.codec("match a response", format!("correlation id {} for request {id}", h.correlation_id)));
        }
        let r = R::Response::decode(&mut body, v).map_err(|e| self.codec("decode a response", format!("{} v{v}: {e}", R::NAME)))?;
        if body.has_remaining() && R::KEY != ApiKey::ApiVersions {
            tracing::debug!(api = R::NAME, left = body.remaining(), "response had trailing bytes");
        }
        Ok(r)
    }

    async fn authenticate(&mut self) -> Result<(), WireError> {
        let Some(sasl) = self.sasl.clone() else { return Ok(()) };
        self.reauth_at = None;
        let mech = sasl.mechanism();
        let addr = self.addr.clone();
        let auth = |m: String| WireError::Auth { addr: addr.clone(), mechanism: mech.to_string(), message: m };
        let refused = |what: &str, r: &SaslAuthenticateResponse| auth(format!("{what}: {}", r.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default()));
        let h = self.call_now(&SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mech))).await?;
        if h.error_code != 0 {
            let offered: Vec<String> = h.mechanisms.iter().map(|m| m.to_string()).collect();
            return Err(auth(format!("refused (error code {}); the broker offers {}", h.error_code, offered.join(", "))));
        }
        let last = match &sasl {
            Sasl::Plain { user, password } => self.sasl_step(format!("\0{user}\0{password}").into_bytes()).await?,
            Sasl::MskIam(iam) => self.sasl_step(iam.client_message().await.map_err(auth)?).await?,
            Sasl::Scram { hash, user, password } => {
                let mut s = Scram::new(*hash, user, password);
                let r = self.sasl_step(s.client_first()).await?;
                if r.error_code != 0 {
                    return Err(refused("refused", &r));
                }
                let last = s.client_final(&r.auth_bytes).map_err(auth)?;
                let r = self.sasl_step(last).await?;
                if r.error_code == 0 {
                    s.verify_server(&r.auth_bytes).map_err(auth)?;
                }
                r
            }
        };
        if last.error_code != 0 {
            return Err(refused("credentials refused", &last));
        }
        if last.session_lifetime_ms > 0 {
            // re-authenticate at 85% of the session, as Kafka's Java client does
            self.reauth_at = Some(tokio::time::Instant::now() + Duration::from_millis(last.session_lifetime_ms as u64 * 85 / 100));
        }
        Ok(())
    }

    async fn sasl_step(&mut self, bytes: Vec<u8>) -> Result<SaslAuthenticateResponse, WireError> {
        self.call_now(&SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes))).await
    }
}
