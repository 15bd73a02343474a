//! Provider-issued bearer tokens: JSON Web Tokens the operator's identity system signs, so that
//! existing accounts connect without open registration. The key is a PEM public key (RSA,
//! EC or Ed25519) or a JWKS file (keys picked by `kid`); issuer, audience, expiry and
//! not-before are checked (jsonwebtoken). The `sub` claim names the user: its local part
//! (`alice`) or its user URI on this provider.

use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use mimi_proto::uri::{Domain, UserUri};
use serde::Deserialize;

/// Configuration of provider tokens (`[client_api.provider_tokens]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderTokensConfig {
    /// The `iss` the tokens must carry.
    pub issuer: String,
    /// The `aud` they must carry.
    pub audience: String,
    /// A PEM public key file.
    #[serde(default)]
    pub public_key: Option<PathBuf>,
    /// A JWKS (JSON Web Key Set) file.
    #[serde(default)]
    pub jwks: Option<PathBuf>,
    /// Accepted algorithms (default `["EdDSA", "ES256", "RS256"]`).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
}

fn default_algorithms() -> Vec<String> {
    vec!["EdDSA".into(), "ES256".into(), "RS256".into()]
}

/// Why a provider token is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The configured key cannot be used.
    #[error("cannot load the provider token key {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The token does not verify or its claims are not acceptable.
    #[error("{0}")]
    Invalid(String),
}

enum Keys {
    One(DecodingKey),
    Set(JwkSet),
}

/// The verifier.
pub struct ProviderTokens {
    keys: Keys,
    validation: Validation,
    domain: Domain,
}

impl std::fmt::Debug for ProviderTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderTokens")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

fn key_error(path: &Path, reason: impl std::fmt::Display) -> TokenError {
    TokenError::Key {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

impl ProviderTokens {
    /// Loads the configured key or key set.
    ///
    /// # Errors
    /// Unreadable or unusable key material, or unknown algorithms.
    pub fn load(cfg: &ProviderTokensConfig, domain: &Domain) -> Result<Self, TokenError> {
        let keys = match (&cfg.public_key, &cfg.jwks) {
            (Some(p), None) => {
                let pem = std::fs::read(p).map_err(|e| key_error(p, e))?;
                let k = DecodingKey::from_ed_pem(&pem)
                    .or_else(|_| DecodingKey::from_ec_pem(&pem))
                    .or_else(|_| DecodingKey::from_rsa_pem(&pem))
                    .map_err(|e| key_error(p, e))?;
                Keys::One(k)
            }
            (None, Some(p)) => {
                let text = std::fs::read_to_string(p).map_err(|e| key_error(p, e))?;
                Keys::Set(serde_json::from_str(&text).map_err(|e| key_error(p, e))?)
            }
            _ => {
                return Err(TokenError::Invalid(
                    "set exactly one of public_key and jwks".into(),
                ));
            }
        };
        let mut algorithms = Vec::new();
        for a in &cfg.algorithms {
            algorithms.push(
                a.parse::<Algorithm>()
                    .map_err(|_| TokenError::Invalid(format!("unknown JWT algorithm {a:?}")))?,
            );
        }
        let Some(first) = algorithms.first().copied() else {
            return Err(TokenError::Invalid("no JWT algorithm configured".into()));
        };
        let mut validation = Validation::new(first);
        validation.algorithms = algorithms;
        validation.set_issuer(&[&cfg.issuer]);
        validation.set_audience(&[&cfg.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        Ok(Self {
            keys,
            validation,
            domain: domain.clone(),
        })
    }

    /// Whether a bearer token has the shape of a JWT (three base64url parts).
    pub fn looks_like(&self, token: &str) -> bool {
        token.split('.').count() == 3 && token.len() > 20
    }

    /// The user name a valid token names.
    ///
    /// # Errors
    /// [`TokenError::Invalid`] saying why.
    pub fn verify(&self, token: &str) -> Result<String, TokenError> {
        let header = decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(TokenError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        // jsonwebtoken checks one key family at a time: the header's, which must be allowed.
        let mut validation = self.validation.clone();
        validation
            .algorithms
            .retain(|a| a.family() == header.alg.family());
        let key = match &self.keys {
            Keys::One(k) => k.clone(),
            Keys::Set(set) => {
                let kid = header
                    .kid
                    .ok_or_else(|| TokenError::Invalid("the token names no kid".into()))?;
                let jwk = set
                    .find(&kid)
                    .ok_or_else(|| TokenError::Invalid(format!("no key {kid:?} in the key set")))?;
                DecodingKey::from_jwk(jwk).map_err(|e| TokenError::Invalid(e.to_string()))?
            }
        };
        let data = decode::<Claims>(token, &key, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let sub = data.claims.sub;
        let name = match sub.parse::<UserUri>() {
            Ok(u) if u.is_of(&self.domain) => u.name().to_owned(),
            Ok(u) => {
                return Err(TokenError::Invalid(format!(
                    "the token is for {u}, not a user of {}",
                    self.domain
                )));
            }
            Err(_) => sub,
        };
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};

    use super::*;

    /// A test key pair, generated for this test only.
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJHNDG68ES6e1wYEzkoHBN3yLPCroMk1BeMQ0NkBJbqT\n-----END PRIVATE KEY-----\n";
    const PUB: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAR8InM6IA2fFHR2xACvwawQ4WsCjIn1qcOpUqEhkCMHw=\n-----END PUBLIC KEY-----\n";

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::EdDSA),
            &claims,
            &EncodingKey::from_ed_pem(KEY.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn issuer_audience_expiry_and_subject_are_checked() {
        let dir = std::env::temp_dir().join(format!("mimi-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("pub.pem");
        std::fs::write(&p, PUB).unwrap();
        let cfg = ProviderTokensConfig {
            issuer: "https://id.a.example".into(),
            audience: "mimi".into(),
            public_key: Some(p),
            jwks: None,
            algorithms: default_algorithms(),
        };
        let v = ProviderTokens::load(&cfg, &Domain::parse("a.example").unwrap()).unwrap();
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        let ok = serde_json::json!({"sub": "alice", "iss": "https://id.a.example", "aud": "mimi", "exp": exp});
        assert_eq!(v.verify(&token(ok.clone())).unwrap(), "alice");
        let mut uri = ok.clone();
        uri["sub"] = "mimi://a.example/u/bob".into();
        assert_eq!(v.verify(&token(uri)).unwrap(), "bob");
        for (field, value) in [
            ("iss", serde_json::json!("https://evil")),
            ("aud", serde_json::json!("other")),
            ("exp", serde_json::json!(1000)),
            ("sub", serde_json::json!("mimi://b.example/u/eve")),
        ] {
            let mut c = ok.clone();
            c[field] = value;
            assert!(v.verify(&token(c)).is_err(), "{field} is checked");
        }
        let mut forged = token(ok);
        forged.replace_range(forged.len() - 4.., "AAAA");
        assert!(v.verify(&forged).is_err(), "the signature is checked");
    }
}
