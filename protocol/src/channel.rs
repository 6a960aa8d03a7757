//! Channel naming: which Pusher channel carries a user's results, and who owns a name.
//!
//! The rule is deliberately narrow: a channel name is one of a few fixed prefixes
//! followed by a validated user id, so an id can never be crafted to name a channel
//! that belongs to someone else.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest channel name every supported push server takes: Sockudo's default limit
/// (Soketi's is 200), so switching servers never strands a user's channel.
pub const MAX_CHANNEL_NAME_LEN: usize = 100;
/// Longest user id we accept: the longest prefix (`private-encrypted-inference.`, 28
/// characters) and the id fit in [`MAX_CHANNEL_NAME_LEN`].
pub const MAX_USER_ID_LEN: usize = MAX_CHANNEL_NAME_LEN - ChannelKind::PrivateEncrypted.prefix().len();

/// The kinds of inference channel a user may subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// `private-inference.{user}`: signed subscription, plaintext events.
    Private,
    /// `private-encrypted-inference.{user}`: events encrypted end to end.
    PrivateEncrypted,
    /// `presence-inference.{user}`: like private, with a member list.
    Presence,
}

impl ChannelKind {
    const ALL: [ChannelKind; 3] =
        [ChannelKind::PrivateEncrypted, ChannelKind::Private, ChannelKind::Presence];

    /// The prefix that, followed by a user id, names a channel of this kind.
    pub const fn prefix(self) -> &'static str {
        match self {
            ChannelKind::Private => "private-inference.",
            ChannelKind::PrivateEncrypted => "private-encrypted-inference.",
            ChannelKind::Presence => "presence-inference.",
        }
    }
}

/// Why a channel name or user id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// Empty, too long or with characters outside `[A-Za-z0-9_@.-]`.
    #[error("user id must be 1–{MAX_USER_ID_LEN} characters of A–Z, a–z, 0–9, `_`, `-`, `@` or `.`")]
    InvalidUserId,
    /// Over the push servers' limit ([`MAX_CHANNEL_NAME_LEN`]).
    #[error("channel name is longer than {MAX_CHANNEL_NAME_LEN} characters")]
    TooLong,
    /// Not one of the inference channel shapes.
    #[error("not an inference channel: expected private-inference.{{user_id}}")]
    NotInference,
}

/// A validated inference channel: its kind and the user it belongs to. On the wire (the
/// task envelope, the stored record) it is its name; a name that does not parse does not
/// decode, so no code past decoding ever holds an unchecked channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InferenceChannel {
    kind: ChannelKind,
    user_id: String,
}

/// True when `user_id` may appear in a channel name.
pub fn is_valid_user_id(user_id: &str) -> bool {
    !user_id.is_empty()
        && user_id.len() <= MAX_USER_ID_LEN
        && user_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'@' | b'.'))
}

impl InferenceChannel {
    /// The channel of `kind` that belongs to `user_id`.
    pub fn new(kind: ChannelKind, user_id: &str) -> Result<Self, ChannelError> {
        if !is_valid_user_id(user_id) {
            return Err(ChannelError::InvalidUserId);
        }
        Ok(Self { kind, user_id: user_id.to_owned() })
    }

    /// The default results channel of a user: `private-inference.{user_id}`.
    pub fn private(user_id: &str) -> Result<Self, ChannelError> {
        Self::new(ChannelKind::Private, user_id)
    }

    /// Reads a channel name as a client sends it to the auth endpoint.
    pub fn parse(name: &str) -> Result<Self, ChannelError> {
        if name.len() > MAX_CHANNEL_NAME_LEN {
            return Err(ChannelError::TooLong);
        }
        let (kind, user_id) = ChannelKind::ALL
            .iter()
            .find_map(|kind| name.strip_prefix(kind.prefix()).map(|rest| (*kind, rest)))
            .ok_or(ChannelError::NotInference)?;
        Self::new(kind, user_id)
    }

    /// Which kind of channel this is.
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// The user whose results this channel carries.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// True when `user_id` owns this channel.
    pub fn is_owned_by(&self, user_id: &str) -> bool {
        self.user_id == user_id
    }

    /// True when events on this channel must be sealed (end-to-end encrypted).
    pub fn is_encrypted(&self) -> bool {
        self.kind == ChannelKind::PrivateEncrypted
    }

    /// True when a task's results may be pushed here for `user_id`: one of the user's own
    /// private channels (a presence channel carries no results).
    pub fn carries_results_of(&self, user_id: &str) -> bool {
        self.is_owned_by(user_id) && matches!(self.kind, ChannelKind::Private | ChannelKind::PrivateEncrypted)
    }
}

impl TryFrom<String> for InferenceChannel {
    type Error = ChannelError;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::parse(&name)
    }
}

impl From<InferenceChannel> for String {
    fn from(channel: InferenceChannel) -> Self {
        channel.to_string()
    }
}

/// On the wire a channel is its name; the schema says which names parse.
impl utoipa::PartialSchema for InferenceChannel {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "The Pusher channel a task's events go to: `private-inference.{user}`, \
                 `private-encrypted-inference.{user}` (end-to-end encrypted) or `presence-inference.{user}`.",
            ))
            .pattern(Some(format!(
                r"^(private|private-encrypted|presence)-inference\.[A-Za-z0-9_@.\-]{{1,{MAX_USER_ID_LEN}}}$"
            )))
            .examples(["private-inference.alice"])
            .into()
    }
}

impl utoipa::ToSchema for InferenceChannel {}

impl fmt::Display for InferenceChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.kind.prefix(), self.user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_channel_name_follows_design() {
        assert_eq!(InferenceChannel::private("alice").unwrap().to_string(), "private-inference.alice");
    }

    #[test]
    fn parse_round_trips_every_kind() {
        for name in [
            "private-inference.alice",
            "private-encrypted-inference.bob",
            "presence-inference.user_42@example.com",
        ] {
            assert_eq!(InferenceChannel::parse(name).unwrap().to_string(), name);
        }
        let encrypted = InferenceChannel::parse("private-encrypted-inference.bob").unwrap();
        assert_eq!(encrypted.kind(), ChannelKind::PrivateEncrypted);
        assert_eq!(encrypted.user_id(), "bob");
    }

    #[test]
    fn other_channels_are_not_inference_channels() {
        for name in [
            "private-chat.alice",
            "inference.alice",
            "private-inference",
            "presence-chat.alice",
            "private-cache-inference.alice",
            "",
        ] {
            assert_eq!(InferenceChannel::parse(name), Err(ChannelError::NotInference), "{name}");
        }
    }

    #[test]
    fn crafted_user_ids_are_refused() {
        for name in [
            "private-inference.",
            "private-inference.alice,private-inference.bob",
            "private-inference.alice bob",
            "private-inference.alice\n",
            "private-inference.ålice",
            "private-inference.a:b",
            "private-inference.a*",
        ] {
            assert_eq!(InferenceChannel::parse(name), Err(ChannelError::InvalidUserId), "{name:?}");
        }
        let long = format!("private-inference.{}", "a".repeat(MAX_USER_ID_LEN + 1));
        assert_eq!(InferenceChannel::parse(&long), Err(ChannelError::InvalidUserId));
        let too_long = format!("private-inference.{}", "a".repeat(MAX_CHANNEL_NAME_LEN));
        assert_eq!(InferenceChannel::parse(&too_long), Err(ChannelError::TooLong));
    }

    #[test]
    fn ownership_is_exact() {
        let channel = InferenceChannel::parse("private-inference.alice").unwrap();
        assert!(channel.is_owned_by("alice"));
        assert!(!channel.is_owned_by("alic"));
        assert!(!channel.is_owned_by("alice2"));
        assert!(!channel.is_owned_by("bob"));
    }

    #[test]
    fn the_wire_form_is_the_name_and_a_bad_name_does_not_decode() {
        let channel = InferenceChannel::private("alice").unwrap();
        assert_eq!(serde_json::to_value(&channel).unwrap(), "private-inference.alice");
        let back: InferenceChannel = serde_json::from_value("private-inference.alice".into()).unwrap();
        assert_eq!(back, channel);
        assert!(serde_json::from_value::<InferenceChannel>("private-chat.alice".into()).is_err());
    }

    #[test]
    fn only_a_users_private_channels_carry_their_results() {
        let parse = |name| InferenceChannel::parse(name).unwrap();
        assert!(parse("private-inference.alice").carries_results_of("alice"));
        assert!(parse("private-encrypted-inference.alice").carries_results_of("alice"));
        assert!(!parse("presence-inference.alice").carries_results_of("alice"));
        assert!(!parse("private-inference.alice").carries_results_of("bob"));
    }

    #[test]
    fn longest_user_id_fits_every_prefix_within_both_servers_limit() {
        // Sockudo refuses channel names over 100 characters, Soketi over 200.
        assert_eq!((MAX_CHANNEL_NAME_LEN, MAX_USER_ID_LEN), (100, 72));
        let id = "a".repeat(MAX_USER_ID_LEN);
        for kind in ChannelKind::ALL {
            let name = InferenceChannel::new(kind, &id).unwrap().to_string();
            assert!(name.len() <= MAX_CHANNEL_NAME_LEN);
            assert_eq!(InferenceChannel::parse(&name).unwrap().kind(), kind);
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parsing_any_text_never_panics_and_what_parses_round_trips(name in "\\PC{0,260}") {
                if let Ok(channel) = InferenceChannel::parse(&name) {
                    prop_assert_eq!(channel.to_string(), name);
                    prop_assert!(is_valid_user_id(channel.user_id()));
                }
            }

            #[test]
            fn crafted_names_with_a_known_prefix_parse_only_with_a_clean_user_id(
                prefix in prop::sample::select(vec!["private-inference.", "presence-inference.", "private-encrypted-inference."]),
                rest in "[ -~]{0,40}",
            ) {
                let parsed = InferenceChannel::parse(&format!("{prefix}{rest}"));
                prop_assert_eq!(parsed.is_ok(), is_valid_user_id(&rest));
            }

            #[test]
            fn a_users_channel_belongs_to_that_user_alone(a in "[A-Za-z0-9_@.-]{1,40}", b in "[A-Za-z0-9_@.-]{1,40}") {
                let channel = InferenceChannel::parse(&InferenceChannel::private(&a).unwrap().to_string()).unwrap();
                prop_assert_eq!(channel.is_owned_by(&b), a == b);
            }
        }
    }
}
