//! End-to-end encrypted channels (`private-encrypted-*`), as Pusher's server libraries do
//! them: a per-channel key `sha256(channel_name ‖ master_key)`, and event data sealed with
//! NaCl secretbox (XSalsa20-Poly1305) as `{"nonce", "ciphertext"}` in base64. Soketi only
//! ever relays the ciphertext; pusher-js decrypts with the `shared_secret` the auth
//! endpoint returned.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use sha2::{Digest, Sha256};

/// A fresh random nonce from the operating system's generator.
pub fn random_nonce() -> [u8; 24] {
    use crypto_secretbox::aead::{AeadCore, OsRng};
    XSalsa20Poly1305::generate_nonce(&mut OsRng).into()
}

/// Why a master key or ciphertext was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncryptionError {
    /// `PUSHER_ENCRYPTION_MASTER_KEY` must be base64 of exactly 32 bytes.
    #[error("the encryption master key must be base64 of exactly 32 bytes")]
    BadMasterKey,
    /// The sealed data does not open with this key.
    #[error("the data could not be decrypted")]
    Undecryptable,
}

/// The 32-byte master key from which every channel's key derives.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// Reads the base64 form (`PUSHER_ENCRYPTION_MASTER_KEY`).
    pub fn from_base64(text: &str) -> Result<Self, EncryptionError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| EncryptionError::BadMasterKey)?;
        bytes.try_into().map(Self).map_err(|_| EncryptionError::BadMasterKey)
    }

    /// The key of `channel`: `sha256(channel ‖ master_key)`.
    pub fn channel_key(&self, channel: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(channel.as_bytes());
        hasher.update(self.0);
        hasher.finalize().into()
    }

    /// The `shared_secret` the auth endpoint returns for `channel`, base64.
    pub fn shared_secret(&self, channel: &str) -> String {
        STANDARD.encode(self.channel_key(channel))
    }

    /// Seals `data` for `channel` with the caller's fresh random `nonce`, giving the JSON
    /// text that goes out as the event's data.
    pub fn seal(&self, channel: &str, nonce: [u8; 24], data: &str) -> String {
        let cipher = XSalsa20Poly1305::new(&self.channel_key(channel).into());
        let ciphertext = cipher
            .encrypt(Nonce::from_slice(&nonce), data.as_bytes())
            .expect("secretbox sealing cannot fail");
        serde_json::json!({"nonce": STANDARD.encode(nonce), "ciphertext": STANDARD.encode(ciphertext)})
            .to_string()
    }

    /// Opens what [`MasterKey::seal`] made (clients do this; here for tests and tools).
    pub fn open(&self, channel: &str, sealed: &str) -> Result<String, EncryptionError> {
        let value: serde_json::Value =
            serde_json::from_str(sealed).map_err(|_| EncryptionError::Undecryptable)?;
        let field = |name: &str| {
            value[name].as_str().and_then(|s| STANDARD.decode(s).ok()).ok_or(EncryptionError::Undecryptable)
        };
        let (nonce, ciphertext) = (field("nonce")?, field("ciphertext")?);
        if nonce.len() != 24 {
            return Err(EncryptionError::Undecryptable);
        }
        let cipher = XSalsa20Poly1305::new(&self.channel_key(channel).into());
        let plain = cipher
            .decrypt(Nonce::from_slice(&nonce), ciphertext.as_slice())
            .map_err(|_| EncryptionError::Undecryptable)?;
        String::from_utf8(plain).map_err(|_| EncryptionError::Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap()
    }

    #[test]
    fn master_key_must_be_32_bytes_of_base64() {
        assert!(MasterKey::from_base64(&STANDARD.encode([1u8; 32])).is_ok());
        assert_eq!(MasterKey::from_base64(&STANDARD.encode([1u8; 31])), Err(EncryptionError::BadMasterKey));
        assert_eq!(MasterKey::from_base64("not base64!"), Err(EncryptionError::BadMasterKey));
        assert!(!format!("{:?}", key()).contains('7'));
    }

    #[test]
    fn channel_key_is_sha256_of_name_then_master_key() {
        let mut expected = Sha256::new();
        expected.update(b"private-encrypted-inference.alice");
        expected.update([7u8; 32]);
        let expected: [u8; 32] = expected.finalize().into();
        assert_eq!(key().channel_key("private-encrypted-inference.alice"), expected);
        assert_ne!(key().channel_key("private-encrypted-inference.bob"), expected);
    }

    #[test]
    fn sealed_data_opens_only_with_the_same_channel_key() {
        let sealed = key().seal("private-encrypted-inference.alice", [3u8; 24], r#"{"secret":1}"#);
        assert!(!sealed.contains("secret"));
        assert_eq!(key().open("private-encrypted-inference.alice", &sealed).unwrap(), r#"{"secret":1}"#);
        assert_eq!(
            key().open("private-encrypted-inference.bob", &sealed),
            Err(EncryptionError::Undecryptable)
        );
    }

    #[test]
    fn sealed_ciphertext_is_the_plaintext_plus_a_16_byte_tag() {
        let sealed = key().seal("c", [0u8; 24], "12345");
        let value: serde_json::Value = serde_json::from_str(&sealed).unwrap();
        let ciphertext = STANDARD.decode(value["ciphertext"].as_str().unwrap()).unwrap();
        assert_eq!(ciphertext.len(), 5 + 16);
        assert_eq!(STANDARD.decode(value["nonce"].as_str().unwrap()).unwrap(), [0u8; 24]);
    }

    #[test]
    fn random_nonces_differ() {
        assert_ne!(random_nonce(), random_nonce());
    }
}
