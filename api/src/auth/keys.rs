//! API keys, held only as SHA-256 hashes and looked up in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Keys that exist only in development mode, and the users they belong to.
pub const DEV_KEYS: &[(&str, &str)] = &[("dev-alice", "alice"), ("dev-bob", "bob")];

/// Why the configured key list could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeysError {
    /// An entry that is not `user_id:64-hex-digits`.
    #[error("API key entry {0} must be `user_id:sha256hex` (64 hex digits)")]
    Malformed(usize),
    /// A user id that cannot name a channel.
    #[error("API key entry {0} names an invalid user id")]
    InvalidUser(usize),
}

/// The known keys: SHA-256 digest → user id.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    entries: Vec<([u8; 32], String)>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl ApiKeys {
    /// Reads `user:sha256hex,user:sha256hex`; with `dev_mode`, adds [`DEV_KEYS`].
    pub fn parse(spec: &str, dev_mode: bool) -> Result<Self, KeysError> {
        let mut keys = ApiKeys::default();
        for (index, entry) in spec.split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let (user, hash) = entry.split_once(':').ok_or(KeysError::Malformed(index + 1))?;
            let bytes = hex::decode(hash.trim()).map_err(|_| KeysError::Malformed(index + 1))?;
            let hash: [u8; 32] = bytes.try_into().map_err(|_| KeysError::Malformed(index + 1))?;
            if !inferpush_protocol::channel::is_valid_user_id(user.trim()) {
                return Err(KeysError::InvalidUser(index + 1));
            }
            keys.entries.push((hash, user.trim().to_owned()));
        }
        if dev_mode {
            for (key, user) in DEV_KEYS {
                keys.entries.push((digest(key), (*user).to_owned()));
            }
        }
        Ok(keys)
    }

    /// The user a presented key belongs to. Every entry is compared, whatever matches,
    /// so the time taken says nothing about which keys exist.
    pub fn user_for(&self, presented: &str) -> Option<&str> {
        let hash = digest(presented);
        let mut found = None;
        for (known, user) in &self.entries {
            if bool::from(known.ct_eq(&hash)) {
                found = Some(user.as_str());
            }
        }
        found
    }

    /// True when `user_id` holds a configured (not development) key: such a user is real,
    /// and development mode must never mint a token in their name.
    pub fn has_configured_user(&self, user_id: &str) -> bool {
        let dev_digests: Vec<[u8; 32]> = DEV_KEYS.iter().map(|(key, _)| digest(key)).collect();
        self.entries.iter().any(|(hash, user)| user == user_id && !dev_digests.contains(hash))
    }

    /// How many keys are configured.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is configured: every request will be refused.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_keys_are_matched_by_their_hash() {
        let hash = hex::encode(digest("s3cret"));
        let keys = ApiKeys::parse(&format!("carol:{hash}"), false).unwrap();
        assert_eq!(keys.user_for("s3cret"), Some("carol"));
        assert_eq!(keys.user_for("s3cret "), None);
        assert_eq!(keys.user_for(&hash), None, "the hash itself is not a key");
    }

    #[test]
    fn dev_keys_exist_only_in_dev_mode() {
        assert_eq!(ApiKeys::parse("", true).unwrap().user_for("dev-alice"), Some("alice"));
        assert_eq!(ApiKeys::parse("", true).unwrap().user_for("dev-bob"), Some("bob"));
        assert_eq!(ApiKeys::parse("", false).unwrap().user_for("dev-alice"), None);
        assert!(ApiKeys::parse("", false).unwrap().is_empty());
    }

    #[test]
    fn malformed_entries_are_refused_with_their_position() {
        let good = hex::encode(digest("x"));
        assert_eq!(ApiKeys::parse("carol", false).unwrap_err(), KeysError::Malformed(1));
        assert_eq!(ApiKeys::parse(&format!("a:{good},b:abcd"), false).unwrap_err(), KeysError::Malformed(2));
        assert_eq!(
            ApiKeys::parse(&format!("bad user:{good}"), false).unwrap_err(),
            KeysError::InvalidUser(1)
        );
    }
}
