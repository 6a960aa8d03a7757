//! Pusher's HMAC-SHA256 signatures: channel authorisation and REST request signing.
//!
//! Both follow <https://pusher.com/docs/channels/library_auth_reference/>: the api
//! signs `socket_id:channel_name[:channel_data]` for subscriptions, and the worker
//! signs `METHOD\nPATH\nSORTED_QUERY` for calls to Soketi's HTTP API.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The Pusher protocol version that `auth_version` names in REST requests.
pub const AUTH_VERSION: &str = "1.0";

/// Why a signature could not be made or did not check out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// A socket id is two unsigned integers joined by a dot, as the server hands them out.
    #[error("socket_id must look like `123.456`")]
    InvalidSocketId,
    /// A REST request lacked one of the `auth_*` parameters.
    #[error("missing query parameter `{0}`")]
    MissingParameter(&'static str),
    /// The body's MD5 did not match `body_md5`.
    #[error("body_md5 does not match the body")]
    BodyMismatch,
    /// The signature was not made with this app's secret.
    #[error("auth_signature does not match")]
    BadSignature,
}

/// The three values that identify a Pusher app: what Laravel calls
/// `PUSHER_APP_ID`, `PUSHER_APP_KEY` and `PUSHER_APP_SECRET`.
#[derive(Clone, PartialEq, Eq)]
pub struct AppCredentials {
    /// Numeric or textual app id, used in REST paths (`/apps/{app_id}/…`).
    pub app_id: String,
    /// Public key, given to clients and prefixed to every channel signature.
    pub key: String,
    /// Shared secret; never leaves the server side.
    pub secret: String,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("app_id", &self.app_id)
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// True when `socket_id` has the `digits.digits` shape servers assign.
pub fn is_valid_socket_id(socket_id: &str) -> bool {
    let Some((left, right)) = socket_id.split_once('.') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    digits(left) && digits(right)
}

impl AppCredentials {
    /// Builds credentials from their three parts.
    pub fn new(app_id: impl Into<String>, key: impl Into<String>, secret: impl Into<String>) -> Self {
        Self { app_id: app_id.into(), key: key.into(), secret: secret.into() }
    }

    fn hmac_hex(&self, message: &str) -> String {
        let mut mac =
            HmacSha256::new_from_slice(self.secret.as_bytes()).expect("HMAC accepts any key length");
        mac.update(message.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The `auth` value for a private (or encrypted) channel subscription:
    /// `key:hex(hmac(secret, "socket_id:channel"))`.
    pub fn authorize_private(&self, socket_id: &str, channel: &str) -> Result<String, SignatureError> {
        if !is_valid_socket_id(socket_id) {
            return Err(SignatureError::InvalidSocketId);
        }
        Ok(format!("{}:{}", self.key, self.hmac_hex(&format!("{socket_id}:{channel}"))))
    }

    /// The `auth` value for a presence channel, where the signed string also covers the
    /// exact `channel_data` JSON text that is sent back to the client.
    pub fn authorize_presence(
        &self,
        socket_id: &str,
        channel: &str,
        channel_data: &str,
    ) -> Result<String, SignatureError> {
        if !is_valid_socket_id(socket_id) {
            return Err(SignatureError::InvalidSocketId);
        }
        let signature = self.hmac_hex(&format!("{socket_id}:{channel}:{channel_data}"));
        Ok(format!("{}:{}", self.key, signature))
    }

    /// Signs a REST call to the Pusher HTTP API and returns the full query string
    /// (the caller's own parameters included) to append after `?`.
    pub fn sign_rest(&self, request: &RestRequest<'_>) -> String {
        let mut params: Vec<(String, String)> =
            request.params.iter().map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned())).collect();
        params.push(("auth_key".into(), self.key.clone()));
        params.push(("auth_timestamp".into(), request.timestamp.to_string()));
        params.push(("auth_version".into(), AUTH_VERSION.into()));
        if !request.body.is_empty() {
            params.push(("body_md5".into(), body_md5(request.body)));
        }
        params.sort();
        let query = join_query(&params);
        let signature = self.hmac_hex(&string_to_sign(request.method, request.path, &query));
        format!("{query}&auth_signature={signature}")
    }

    /// Checks a signed REST call as a Pusher server would: the body's MD5, then the
    /// signature over every parameter except `auth_signature`, compared in constant time.
    /// Timestamp freshness is the caller's policy, so it is not judged here.
    pub fn verify_rest(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: &[u8],
    ) -> Result<(), SignatureError> {
        let find = |name: &'static str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .ok_or(SignatureError::MissingParameter(name))
        };
        let given = find("auth_signature")?;
        find("auth_key")?;
        find("auth_timestamp")?;
        if !body.is_empty() && find("body_md5")? != body_md5(body) {
            return Err(SignatureError::BodyMismatch);
        }
        let mut params: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| k != "auth_signature")
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        params.sort();
        let expected = self.hmac_hex(&string_to_sign(method, path, &join_query(&params)));
        if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
            Ok(())
        } else {
            Err(SignatureError::BadSignature)
        }
    }
}

/// One call to the Pusher HTTP API, before signing.
#[derive(Debug, Clone, Copy)]
pub struct RestRequest<'a> {
    /// `POST`, `GET`…: upper case, as it goes on the wire.
    pub method: &'a str,
    /// The path, e.g. `/apps/123/batch_events`.
    pub path: &'a str,
    /// The exact body bytes that will be sent (empty for a GET).
    pub body: &'a [u8],
    /// Seconds since the Unix epoch; the caller reads the clock.
    pub timestamp: u64,
    /// Extra query parameters (e.g. `info`), signed along with the `auth_*` ones.
    pub params: &'a [(&'a str, &'a str)],
}

/// Lower-case hex MD5 of a request body, as `body_md5` carries it.
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

fn join_query(params: &[(String, String)]) -> String {
    params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

fn string_to_sign(method: &str, path: &str, query: &str) -> String {
    format!("{}\n{}\n{}", method.to_ascii_uppercase(), path, query)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials used throughout Pusher's authentication reference.
    fn docs_app() -> AppCredentials {
        AppCredentials::new("3", "278d425bdf160c739803", "7ad3773142a6692b25b8")
    }

    #[test]
    fn private_channel_matches_pusher_docs_worked_example() {
        let auth = docs_app().authorize_private("1234.1234", "private-foobar").unwrap();
        assert_eq!(
            auth,
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
    }

    #[test]
    fn presence_channel_matches_pusher_docs_worked_example() {
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        let auth = docs_app().authorize_presence("1234.1234", "presence-foobar", data).unwrap();
        assert_eq!(
            auth,
            "278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
        );
    }

    #[test]
    fn rest_request_matches_pusher_docs_worked_example() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let query = docs_app().sign_rest(&RestRequest {
            method: "POST",
            path: "/apps/3/events",
            body,
            timestamp: 1353088179,
            params: &[],
        });
        assert_eq!(
            query,
            "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0\
             &body_md5=ec365a775a4cd0599faeb73354201b6f\
             &auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    #[test]
    fn extra_params_are_sorted_and_lower_cased_before_signing() {
        let app = docs_app();
        let a = app.sign_rest(&RestRequest {
            method: "GET",
            path: "/apps/3/channels",
            body: b"",
            timestamp: 1,
            params: &[("Info", "user_count"), ("filter_by_prefix", "presence-")],
        });
        assert!(a.starts_with("auth_key="), "{a}");
        assert!(a.contains("&filter_by_prefix=presence-&info=user_count&"), "{a}");
        assert!(!a.contains("body_md5"), "a GET has no body to hash: {a}");
    }

    #[test]
    fn verify_accepts_own_signature_and_rejects_tampering() {
        let app = docs_app();
        let body = br#"{"batch":[]}"#;
        let signed = app.sign_rest(&RestRequest {
            method: "POST",
            path: "/apps/3/batch_events",
            body,
            timestamp: 42,
            params: &[],
        });
        let query: Vec<(String, String)> = signed
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect();
        assert_eq!(app.verify_rest("POST", "/apps/3/batch_events", &query, body), Ok(()));
        assert_eq!(
            app.verify_rest("POST", "/apps/3/batch_events", &query, br#"{"batch":[1]}"#),
            Err(SignatureError::BodyMismatch)
        );
        assert_eq!(
            app.verify_rest("POST", "/apps/4/batch_events", &query, body),
            Err(SignatureError::BadSignature)
        );
        let other = AppCredentials::new("3", "278d425bdf160c739803", "wrong");
        assert_eq!(
            other.verify_rest("POST", "/apps/3/batch_events", &query, body),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn socket_ids_must_be_two_dotted_integers() {
        for good in ["1234.1234", "0.0", "123456789.987654321"] {
            assert!(is_valid_socket_id(good), "{good}");
        }
        for bad in ["", "1234", "1234.", ".1234", "12a4.1", "1.2.3", "1:2", " 1.2", "1.2\n", "-1.2"] {
            assert!(!is_valid_socket_id(bad), "{bad:?}");
            assert_eq!(docs_app().authorize_private(bad, "private-x"), Err(SignatureError::InvalidSocketId));
        }
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let shown = format!("{:?}", docs_app());
        assert!(!shown.contains("7ad3773142a6692b25b8"), "{shown}");
    }
}
