//! Where a task's events go: the sinks a deployment can turn on, a task's own choice among
//! them, and which webhook targets may be called.
//!
//! A deployment turns sinks on (`INFERPUSH_SINKS`); a task may narrow them (`sinks`) and
//! add a webhook (`webhook`, `webhook_events_filter`). The api validates the choice at
//! submit, the worker applies it from the stored record, both through [`Delivery::wants`].

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::lifecycle::TaskStatus;

/// One way of delivering a task's events.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// The owner's Pusher channel, through Soketi.
    Pusher,
    /// Server-sent events from the api (`/v1/events`), fed through Redis.
    Sse,
    /// An MQTT topic per user on a broker.
    Mqtt,
    /// A signed HTTP request to the task's `webhook` URL.
    Webhook,
}

impl SinkKind {
    /// Every sink, in a stable order.
    pub const ALL: [SinkKind; 4] = [SinkKind::Pusher, SinkKind::Sse, SinkKind::Mqtt, SinkKind::Webhook];

    /// The name used in settings and bodies.
    pub fn name(self) -> &'static str {
        match self {
            SinkKind::Pusher => "pusher",
            SinkKind::Sse => "sse",
            SinkKind::Mqtt => "mqtt",
            SinkKind::Webhook => "webhook",
        }
    }
}

impl std::fmt::Display for SinkKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SinkKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SinkKind::ALL
            .into_iter()
            .find(|kind| kind.name() == s.trim())
            .ok_or_else(|| format!("`{s}` is not a sink: choose from pusher, sse, mqtt, webhook"))
    }
}

/// The events a webhook can be sent for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookEvent {
    /// A worker took the task.
    Started,
    /// It succeeded.
    Completed,
    /// It failed or was cancelled.
    Failed,
}

impl WebhookEvent {
    /// The event that announces `status` (none for `queued`).
    pub fn of(status: TaskStatus) -> Option<Self> {
        match status {
            TaskStatus::Queued => None,
            TaskStatus::Running => Some(WebhookEvent::Started),
            TaskStatus::Succeeded => Some(WebhookEvent::Completed),
            TaskStatus::Failed | TaskStatus::Cancelled | TaskStatus::Expired => Some(WebhookEvent::Failed),
        }
    }
}

/// A task's own choice of where its events go, as submitted and as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    /// Only these of the deployment's sinks (absent: all of them that apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sinks: Option<Vec<SinkKind>>,
    /// Where to send signed webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Which events the webhook gets (absent: all three).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_events_filter: Option<Vec<WebhookEvent>>,
}

impl Delivery {
    /// True when the task made no choice (nothing is recorded).
    pub fn is_default(&self) -> bool {
        *self == Delivery::default()
    }

    /// The sinks this task's events go to, of the deployment's `enabled` ones: its own
    /// list if it gave one, and the webhook only with a URL.
    pub fn sinks(&self, enabled: &[SinkKind]) -> Vec<SinkKind> {
        let mut chosen: Vec<SinkKind> = enabled
            .iter()
            .copied()
            .filter(|kind| self.sinks.as_ref().is_none_or(|own| own.contains(kind)))
            .filter(|kind| *kind != SinkKind::Webhook || self.webhook.is_some())
            .collect();
        chosen.sort();
        chosen.dedup();
        chosen
    }

    /// Whether sink `kind` gets the event that announces `status`.
    pub fn wants(&self, kind: SinkKind, status: TaskStatus, enabled: &[SinkKind]) -> bool {
        if !self.sinks(enabled).contains(&kind) {
            return false;
        }
        match (kind, WebhookEvent::of(status), &self.webhook_events_filter) {
            (_, None, _) => false,
            (SinkKind::Webhook, Some(event), Some(filter)) => filter.contains(&event),
            _ => true,
        }
    }

    /// Checks the choice against the deployment: the sinks it names are on, a webhook
    /// filter comes with a webhook, the URL is one `targets` allows. The message names
    /// the field at fault.
    /// The choice for an end-to-end encrypted task: only a sink that carries sealed data
    /// (Pusher's `private-encrypted-` channels) may carry its result, so a task that names
    /// no sinks gets Pusher alone, and one that names others (or a webhook) is refused,
    /// naming them: the server would otherwise hand them the plaintext.
    pub fn sealed(self) -> Result<Self, String> {
        let plain: Vec<&str> = match &self.sinks {
            Some(own) => own.iter().filter(|k| **k != SinkKind::Pusher).map(|k| k.name()).collect(),
            None => Vec::new(),
        };
        if !plain.is_empty() {
            return Err(format!(
                "`encrypted` results travel sealed on Pusher's encrypted channels only; `sinks` also names {}, \
                 which would carry them in plaintext: leave those out",
                plain.join(", ")
            ));
        }
        if self.webhook.is_some() {
            return Err(
                "`encrypted` results travel sealed on Pusher's encrypted channels only; a `webhook` would carry \
                 them in plaintext: leave it out"
                    .into(),
            );
        }
        Ok(Self { sinks: Some(vec![SinkKind::Pusher]), ..self })
    }

    pub fn validate(&self, enabled: &[SinkKind], targets: &WebhookTargets) -> Result<(), String> {
        let on = |kind: SinkKind| enabled.contains(&kind);
        let names = || enabled.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ");
        if let Some(own) = &self.sinks {
            if own.is_empty() {
                return Err("`sinks` is empty: name at least one, or leave it out for all".into());
            }
            if let Some(off) = own.iter().find(|kind| !on(**kind)) {
                return Err(format!(
                    "`sinks` names `{off}`, which this deployment has not turned on (on: {})",
                    names()
                ));
            }
            if own.contains(&SinkKind::Webhook) && self.webhook.is_none() {
                return Err("`sinks` names `webhook` but the task has no `webhook` URL".into());
            }
        }
        if self.webhook_events_filter.is_some() && self.webhook.is_none() {
            return Err("`webhook_events_filter` needs a `webhook` URL".into());
        }
        if matches!(&self.webhook_events_filter, Some(filter) if filter.is_empty()) {
            return Err(
                "`webhook_events_filter` is empty: name at least one event, or leave it out for all".into()
            );
        }
        if let Some(url) = &self.webhook {
            if !on(SinkKind::Webhook) {
                return Err(format!(
                    "`webhook`: this deployment has not turned webhooks on (on: {})",
                    names()
                ));
            }
            if self.sinks.as_ref().is_some_and(|own| !own.contains(&SinkKind::Webhook)) {
                return Err("`webhook` is given but `sinks` leaves `webhook` out".into());
            }
            targets.check_url(url).map_err(|reason| format!("`webhook`: {reason}"))?;
        }
        Ok(())
    }
}

/// The longest webhook URL accepted.
pub const MAX_WEBHOOK_URL_LEN: usize = 2048;

/// Which webhook targets may be called: any public address, and private, loopback or
/// otherwise internal ones only when allowed by name or by network
/// (`INFERPUSH_WEBHOOK_ALLOWED_HOSTS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookTargets {
    hosts: Vec<String>,
    networks: Vec<ipnet::IpNet>,
}

impl WebhookTargets {
    /// From a list of host names, addresses and CIDR networks (`hooks.internal`,
    /// `127.0.0.1`, `10.0.0.0/8`, `::1`).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut targets = WebhookTargets::default();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if let Ok(network) = entry.parse::<ipnet::IpNet>() {
                targets.networks.push(network);
            } else if let Ok(address) = entry.trim_matches(['[', ']']).parse::<IpAddr>() {
                targets.networks.push(ipnet::IpNet::from(address));
            } else if entry.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
                targets.hosts.push(entry.to_ascii_lowercase());
            } else {
                return Err(format!("`{entry}` is neither a host name, an address nor a CIDR network"));
            }
        }
        Ok(targets)
    }

    /// Whether `host` is named in the allow-list.
    pub fn allows_name(&self, host: &str) -> bool {
        self.hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(host))
    }

    /// Whether a request may go to `address` (for a host not named in the allow-list).
    pub fn allows_address(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        is_public(address) || self.networks.iter().any(|network| network.contains(&address))
    }

    /// Checks a webhook URL as far as can be without resolving its host: `http` or
    /// `https`, a host, no credentials, not too long, and an address literal (or
    /// `localhost`) only when allowed. A host name's addresses are checked when it is
    /// called.
    pub fn check_url(&self, raw: &str) -> Result<url::Url, String> {
        if raw.len() > MAX_WEBHOOK_URL_LEN {
            return Err(format!("the URL is longer than {MAX_WEBHOOK_URL_LEN} characters"));
        }
        let url = url::Url::parse(raw).map_err(|e| format!("not a valid URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("the scheme must be http or https, not `{}`", url.scheme()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("the URL must not carry credentials".into());
        }
        let blocked = |what: &str| {
            format!("{what} may not be a webhook target unless INFERPUSH_WEBHOOK_ALLOWED_HOSTS allows it")
        };
        match url.host() {
            None => return Err("the URL has no host".into()),
            Some(url::Host::Domain(name)) => {
                let local = name.eq_ignore_ascii_case("localhost")
                    || name.to_ascii_lowercase().ends_with(".localhost");
                if local && !self.allows_name(name) && !self.allows_address(IpAddr::from([127, 0, 0, 1])) {
                    return Err(blocked(&format!("`{name}` (loopback)")));
                }
            }
            Some(url::Host::Ipv4(address)) => {
                self.check_literal(IpAddr::V4(address)).map_err(|w| blocked(&w))?
            }
            Some(url::Host::Ipv6(address)) => {
                self.check_literal(IpAddr::V6(address)).map_err(|w| blocked(&w))?
            }
        }
        Ok(url)
    }

    fn check_literal(&self, address: IpAddr) -> Result<(), String> {
        if self.allows_address(address) || self.allows_name(&address.to_string()) {
            Ok(())
        } else {
            Err(format!("{address} (a private, loopback or reserved address)"))
        }
    }
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
        v4 => v4,
    }
}

/// Whether `address` is on the public internet: not loopback, private, link-local,
/// shared (carrier-grade NAT), unspecified, multicast, broadcast, documentation,
/// unique-local or site-local; nor an IPv6 address that reaches an IPv4 one through a
/// translator or tunnel (NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`, IPv4-compatible
/// `::a.b.c.d`, 6to4 `2002::/16`), which could reach an internal IPv4 host.
pub fn is_public(address: IpAddr) -> bool {
    match canonical(address) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            let shared = a == 100 && (64..128).contains(&b);
            let reserved = a == 0 || a >= 240 || (a == 192 && b == 0) || (a == 198 && (18..20).contains(&b));
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || shared
                || reserved)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            let unique_local = (first & 0xfe00) == 0xfc00;
            let link_local = (first & 0xffc0) == 0xfe80;
            let segments = v6.segments();
            let site_local = (first & 0xffc0) == 0xfec0;
            let documentation = first == 0x2001 && segments[1] == 0x0db8;
            let nat64 = first == 0x0064
                && segments[1] == 0xff9b
                && (segments[2..6] == [0, 0, 0, 0] || segments[2] == 0x0001);
            let ipv4_compatible = segments[..6] == [0, 0, 0, 0, 0, 0];
            let six_to_four = first == 0x2002;
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || unique_local
                || link_local
                || site_local
                || documentation
                || nat64
                || ipv4_compatible
                || six_to_four)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_ON: &[SinkKind] = &SinkKind::ALL;

    #[test]
    fn sink_names_round_trip_and_unknown_ones_are_named() {
        for kind in SinkKind::ALL {
            assert_eq!(kind.name().parse::<SinkKind>().unwrap(), kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
        assert!("carrier-pigeon".parse::<SinkKind>().unwrap_err().contains("carrier-pigeon"));
    }

    #[test]
    fn a_task_without_a_choice_gets_every_sink_that_applies() {
        let none = Delivery::default();
        assert_eq!(
            none.sinks(ALL_ON),
            [SinkKind::Pusher, SinkKind::Sse, SinkKind::Mqtt],
            "no URL, no webhook"
        );
        assert!(!none.wants(SinkKind::Pusher, TaskStatus::Queued, ALL_ON), "queued is never announced");
        let hooked = Delivery { webhook: Some("https://example.com/h".into()), ..Delivery::default() };
        assert!(hooked.wants(SinkKind::Webhook, TaskStatus::Running, ALL_ON));
        assert!(!hooked.wants(SinkKind::Webhook, TaskStatus::Running, &[SinkKind::Pusher]), "deployment off");
    }

    #[test]
    fn a_task_may_narrow_the_sinks_and_filter_its_webhook() {
        let choice = Delivery {
            sinks: Some(vec![SinkKind::Webhook]),
            webhook: Some("https://example.com/h".into()),
            webhook_events_filter: Some(vec![WebhookEvent::Completed, WebhookEvent::Failed]),
        };
        assert_eq!(choice.sinks(ALL_ON), [SinkKind::Webhook]);
        assert!(!choice.wants(SinkKind::Pusher, TaskStatus::Succeeded, ALL_ON));
        assert!(!choice.wants(SinkKind::Webhook, TaskStatus::Running, ALL_ON), "started filtered out");
        assert!(choice.wants(SinkKind::Webhook, TaskStatus::Succeeded, ALL_ON));
        assert!(
            choice.wants(SinkKind::Webhook, TaskStatus::Cancelled, ALL_ON),
            "cancelled is a failed event"
        );
    }

    #[test]
    fn validation_names_the_field_at_fault() {
        let targets = WebhookTargets::default();
        let enabled = [SinkKind::Pusher, SinkKind::Sse, SinkKind::Webhook];
        let check = |d: Delivery| d.validate(&enabled, &targets).unwrap_err();
        let hook = || Some("https://example.com/hook".to_owned());
        assert!(
            check(Delivery { sinks: Some(vec![SinkKind::Mqtt]), ..Default::default() }).contains("`mqtt`")
        );
        assert!(check(Delivery { sinks: Some(vec![]), ..Default::default() }).contains("empty"));
        assert!(
            check(Delivery { sinks: Some(vec![SinkKind::Webhook]), ..Default::default() })
                .contains("no `webhook`")
        );
        assert!(
            check(Delivery {
                webhook_events_filter: Some(vec![WebhookEvent::Started]),
                ..Default::default()
            })
            .contains("needs a `webhook`")
        );
        assert!(
            check(Delivery { webhook: hook(), sinks: Some(vec![SinkKind::Pusher]), ..Default::default() })
                .contains("leaves `webhook` out")
        );
        assert!(
            check(Delivery { webhook: Some("ftp://x.example/".into()), ..Default::default() })
                .contains("scheme")
        );
        assert!(
            check(Delivery { webhook: Some("http://127.0.0.1:9/".into()), ..Default::default() })
                .contains("INFERPUSH_WEBHOOK_ALLOWED_HOSTS")
        );
        let off = Delivery { webhook: hook(), ..Default::default() }
            .validate(&[SinkKind::Pusher], &targets)
            .unwrap_err();
        assert!(off.contains("not turned webhooks on"), "{off}");
        assert!(Delivery { webhook: hook(), ..Default::default() }.validate(&enabled, &targets).is_ok());
        assert!(Delivery::default().validate(&enabled, &targets).is_ok());
    }

    #[test]
    fn an_encrypted_task_goes_to_pusher_alone_and_naming_another_sink_is_refused() {
        assert_eq!(Delivery::default().sealed().unwrap().sinks, Some(vec![SinkKind::Pusher]));
        let pusher = Delivery { sinks: Some(vec![SinkKind::Pusher]), ..Default::default() };
        assert_eq!(pusher.clone().sealed().unwrap(), pusher);
        let sse = Delivery {
            sinks: Some(vec![SinkKind::Pusher, SinkKind::Sse, SinkKind::Mqtt]),
            ..Default::default()
        };
        let refused = sse.sealed().unwrap_err();
        assert!(refused.contains("sse, mqtt"), "{refused}");
        let hooked = Delivery { webhook: Some("https://example.com/h".into()), ..Default::default() };
        assert!(hooked.sealed().unwrap_err().contains("webhook"));
    }

    #[test]
    fn internal_targets_need_the_allow_list() {
        let none = WebhookTargets::default();
        for blocked in [
            "http://127.0.0.1/",
            "http://localhost:8080/",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fd00::1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[64:ff9b:1::a00:1]/",
            "http://[::127.0.0.1]/",
            "http://[::a9fe:a9fe]/",
            "http://[fec0::1]/",
            "http://[2002:7f00:1::]/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "https://user:pw@example.com/",
        ] {
            assert!(none.check_url(blocked).is_err(), "{blocked} passed");
        }
        assert!(none.check_url("https://hooks.example.com/inferpush").is_ok());
        assert!(none.check_url("http://93.184.216.34/").is_ok());
        assert!(none.check_url("http://[2606:2800:220:1::1]/").is_ok(), "public IPv6");

        let loopback =
            WebhookTargets::parse(&["127.0.0.0/8".into(), "::1".into(), "hooks.internal".into()]).unwrap();
        assert!(loopback.check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(loopback.check_url("http://localhost:9000/hook").is_ok());
        assert!(loopback.check_url("http://[::1]:9000/hook").is_ok());
        assert!(loopback.allows_name("HOOKS.internal"));
        assert!(loopback.check_url("http://10.0.0.1/").is_err(), "only what is listed");
        assert!(WebhookTargets::parse(&["not a host!".into()]).is_err());
    }
}
