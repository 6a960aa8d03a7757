//! JWT bearer tokens for browser users: HS256 with a shared secret or RS256 with a
//! public key, `exp` and `nbf` always checked, `iss` and `aud` when configured; the user
//! is `sub`. Only the configured algorithm is accepted, so `alg: none` never passes.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;

/// Why a token was refused (all answered as 401, with this text as the detail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Past `exp`.
    #[error("the token has expired")]
    Expired,
    /// Before `nbf`.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// Not signed with our key.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `alg` is not the configured algorithm (including `none`).
    #[error("the token's algorithm is not accepted")]
    WrongAlgorithm,
    /// `iss` or `aud` do not match the configuration.
    #[error("the token was issued by or for someone else")]
    WrongParty,
    /// `sub` is missing or cannot name a user.
    #[error(
        "the token's `sub` is not a valid user id: 1–{max} characters of A–Z, a–z, 0–9, `_`, `-`, `@` or `.`",
        max = inferpush_protocol::channel::MAX_USER_ID_LEN
    )]
    BadSubject,
    /// Anything else: malformed, missing claims.
    #[error("the token is malformed or lacks required claims (exp, sub)")]
    Malformed,
}

/// Why the JWT settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    /// Both an HS256 secret and an RS256 key were given.
    #[error("configure either an HS256 secret or an RS256 public key, not both")]
    Both,
    /// The RS256 key could not be read.
    #[error("reading the RS256 public key: {0}")]
    Key(String),
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
}

/// Verifies tokens with one key and one algorithm.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl JwtVerifier {
    /// A verifier from the configuration; `None` when JWTs are not configured.
    pub fn from_config(
        hs256_secret: Option<&str>,
        rs256_public_key_pem: Option<&[u8]>,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<Option<Self>, JwtConfigError> {
        let (key, algorithm) = match (hs256_secret.filter(|s| !s.is_empty()), rs256_public_key_pem) {
            (Some(_), Some(_)) => return Err(JwtConfigError::Both),
            (None, None) => return Ok(None),
            (Some(secret), None) => (DecodingKey::from_secret(secret.as_bytes()), Algorithm::HS256),
            (None, Some(pem)) => (
                DecodingKey::from_rsa_pem(pem).map_err(|e| JwtConfigError::Key(e.to_string()))?,
                Algorithm::RS256,
            ),
        };
        let mut validation = Validation::new(algorithm);
        validation.validate_nbf = true;
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match audience.filter(|a| !a.is_empty()) {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = issuer.filter(|i| !i.is_empty()) {
            validation.set_issuer(&[issuer]);
        }
        Ok(Some(Self { key, validation }))
    }

    /// The user a valid token names.
    pub fn verify(&self, token: &str) -> Result<String, JwtError> {
        let data = decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => JwtError::Expired,
            ErrorKind::ImmatureSignature => JwtError::NotYetValid,
            ErrorKind::InvalidSignature => JwtError::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::MissingAlgorithm => {
                JwtError::WrongAlgorithm
            }
            ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => JwtError::WrongParty,
            _ => JwtError::Malformed,
        })?;
        let sub = data.claims.sub.ok_or(JwtError::BadSubject)?;
        if !inferpush_protocol::channel::is_valid_user_id(&sub) {
            return Err(JwtError::BadSubject);
        }
        Ok(sub)
    }
}

/// True when `token` has the three dot-separated parts of a JWT.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &str = "unit-test-secret";

    fn now() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
    }

    fn token(claims: serde_json::Value, secret: &str) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::from_config(Some(SECRET), None, Some("inferpush"), Some("api")).unwrap().unwrap()
    }

    fn valid() -> serde_json::Value {
        json!({"sub": "carol", "exp": now() + 60, "iss": "inferpush", "aud": "api"})
    }

    #[test]
    fn a_valid_token_names_its_subject() {
        assert_eq!(verifier().verify(&token(valid(), SECRET)), Ok("carol".into()));
    }

    #[test]
    fn each_kind_of_bad_token_is_refused_for_its_reason() {
        let mut expired = valid();
        expired["exp"] = json!(now() - 600);
        let mut early = valid();
        early["nbf"] = json!(now() + 600);
        let mut foreign = valid();
        foreign["iss"] = json!("someone-else");
        let mut bad_sub = valid();
        bad_sub["sub"] = json!("a b");
        let mut no_exp = valid();
        no_exp.as_object_mut().unwrap().remove("exp");
        let none_alg =
            format!("{}.{}.", base64_url(r#"{"alg":"none","typ":"JWT"}"#), base64_url(&valid().to_string()));
        let v = verifier();
        assert_eq!(v.verify(&token(expired, SECRET)), Err(JwtError::Expired));
        assert_eq!(v.verify(&token(early, SECRET)), Err(JwtError::NotYetValid));
        assert_eq!(v.verify(&token(valid(), "wrong-secret")), Err(JwtError::BadSignature));
        assert_eq!(v.verify(&token(foreign, SECRET)), Err(JwtError::WrongParty));
        assert_eq!(v.verify(&token(bad_sub, SECRET)), Err(JwtError::BadSubject));
        assert_eq!(v.verify(&token(no_exp, SECRET)), Err(JwtError::Malformed));
        assert!(v.verify(&none_alg).is_err());
        assert_eq!(v.verify("a.b.c"), Err(JwtError::Malformed));
    }

    fn base64_url(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    #[test]
    fn no_configuration_means_no_verifier_and_both_is_an_error() {
        assert!(JwtVerifier::from_config(None, None, None, None).unwrap().is_none());
        assert!(JwtVerifier::from_config(Some("s"), Some(b"pem"), None, None).is_err());
    }
}
