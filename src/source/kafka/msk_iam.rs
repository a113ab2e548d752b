//! Amazon MSK IAM authentication: SASL OAUTHBEARER (RFC 7628) carrying the
//! token AWS's MSK signer libraries make — a SigV4-presigned
//! `kafka-cluster:Connect` URL, base64url-encoded — built by the
//! `aws-msk-iam-sasl-signer` crate from the AWS credential chain (task
//! role, instance profile, environment, profile files).
//!
//! Input: the cluster's region. Output: the client's one SASL message,
//! with a token signed now (valid 15 minutes; connections re-authenticate
//! before the broker's session lifetime ends, see `wire.rs`). Failure: no
//! credentials in the chain or the signer failed: a message naming the
//! cause, never a secret.

use aws_credential_types::provider::SharedCredentialsProvider;
use std::sync::Arc;

#[derive(Clone)]
pub struct MskIam {
    region: String,
    credentials: Arc<tokio::sync::OnceCell<SharedCredentialsProvider>>,
}

impl MskIam {
    /// Credentials come from the default chain, loaded at the first use.
    pub fn new(region: String) -> MskIam {
        MskIam { region, credentials: Arc::new(tokio::sync::OnceCell::new()) }
    }

    #[cfg(test)]
    fn with_credentials(region: &str, credentials: SharedCredentialsProvider) -> MskIam {
        MskIam { region: region.to_string(), credentials: Arc::new(tokio::sync::OnceCell::new_with(Some(credentials))) }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The client's OAUTHBEARER message: `n,,\x01auth=Bearer <token>\x01\x01`.
    pub async fn client_message(&self) -> Result<Vec<u8>, String> {
        let region = aws_config::Region::new(self.region.clone());
        let provider = self
            .credentials
            .get_or_try_init(|| async {
                let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(region.clone()).load().await;
                cfg.credentials_provider().ok_or_else(|| "no AWS credentials provider (set AWS_* variables, a profile or a task/instance role)".to_string())
            })
            .await?
            .clone();
        let (token, _expires_ms) = aws_msk_iam_sasl_signer::generate_auth_token_from_credentials_provider(region, provider)
            .await
            .map_err(|e| format!("cannot sign the MSK IAM token: {e}"))?;
        Ok(format!("n,,\x01auth=Bearer {token}\x01\x01").into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::http::sigv4::{canonical_query, signature};
    use base64::Engine;
    use sha2::{Digest, Sha256};

    /// The token is checked the way MSK checks it, by the front door's own
    /// SigV4 code (not by aws-sigv4, which the signer uses): the presigned
    /// URL's signature is recomputed from the secret key.
    #[tokio::test]
    async fn the_token_is_a_presigned_connect_url_whose_signature_verifies() {
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let creds = aws_credential_types::Credentials::new("AKIDEXAMPLE", secret, Some("SESSION/TOKEN+=".into()), None, "test");
        let iam = MskIam::with_credentials("eu-west-1", SharedCredentialsProvider::new(creds));
        let msg = String::from_utf8(iam.client_message().await.unwrap()).unwrap();
        let token = msg.strip_prefix("n,,\x01auth=Bearer ").and_then(|t| t.strip_suffix("\x01\x01")).expect("OAUTHBEARER framing");
        let url = url::Url::parse(&String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).unwrap()).unwrap()).unwrap();
        assert_eq!(url.host_str(), Some("kafka.eu-west-1.amazonaws.com"));
        let q: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
        assert_eq!(get("Action"), "kafka-cluster:Connect");
        assert_eq!(get("X-Amz-Expires"), "900");
        assert_eq!(get("X-Amz-Security-Token"), "SESSION/TOKEN+=");
        let date = get("X-Amz-Date");
        assert_eq!(get("X-Amz-Credential"), format!("AKIDEXAMPLE/{}/eu-west-1/kafka-cluster/aws4_request", &date[..8]));
        // signed: every parameter but the signature and the User-Agent added after signing
        let signed = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(q.iter().filter(|(k, _)| k != "X-Amz-Signature" && k != "User-Agent"))
            .finish();
        let canonical = format!("GET\n/\n{}\nhost:kafka.eu-west-1.amazonaws.com\n\nhost\n{}", canonical_query(&signed), hex::encode(Sha256::digest(b"")));
        assert_eq!(get("X-Amz-Signature"), signature(secret, &date, "eu-west-1", "kafka-cluster", &canonical));
        // a different secret does not verify: the check above can fail
        assert_ne!(get("X-Amz-Signature"), signature("not-the-secret", &date, "eu-west-1", "kafka-cluster", &canonical));
    }
}
