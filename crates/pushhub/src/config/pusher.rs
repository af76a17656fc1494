//! `[apps.NAME.pusher]`: an app's Pusher Channels face, as Soketi's and Reverb's app
//! arrays configure it (issue 19), checked and resolved into the hub's
//! [`PusherPolicy`].
//!
//! Apps are not covered by `PUSHHUB_*` variables (no app key is), so neither is this
//! table: a secret kept out of the file goes in with the rest of the app's secrets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::raw::RawApp;
use crate::backend::pusher_webhooks::{PusherWebhookSettings, EVENT_TYPES};
use crate::hub::app::PusherPolicy;

/// One app's Pusher settings as written. The limits default to Pusher's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPusher {
    /// The app id the HTTP API's paths name (`/apps/{app_id}/events`): Pusher's are
    /// digits, Soketi's and Reverb's any text; letters, digits, `-`, `_` and `.` here.
    pub app_id: String,
    /// The public key pusher-js is created with (`new Pusher(key)`), the WebSocket path
    /// `/app/{key}` and the API's `auth_key`.
    pub key: String,
    /// Signs channel and user authorizations, API requests and webhooks; keep it secret.
    pub secret: String,
    /// Whether clients may send `client-` events on private and presence channels.
    #[serde(default)]
    pub client_events: bool,
    /// `false` switches the app off for Pusher clients (error 4003) and its HTTP API.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Most Pusher connections to the app at once; 0 (the default): no limit.
    #[serde(default)]
    pub max_connections: usize,
    /// Most members one presence channel holds.
    #[serde(default = "default_presence_members")]
    pub max_presence_members: usize,
    /// Largest `user_info` of a presence member, in bytes.
    #[serde(default = "default_member_info_bytes")]
    pub max_member_info_bytes: usize,
    /// Largest event `data`, in bytes (client events and API triggers); the API answers a
    /// larger one with 413.
    #[serde(default = "default_event_bytes")]
    pub max_event_bytes: usize,
    /// Most channels one `POST /apps/{id}/events` names.
    #[serde(default = "default_trigger_channels")]
    pub max_trigger_channels: usize,
    /// Most events one `POST /apps/{id}/batch_events` carries.
    #[serde(default = "default_batch_events")]
    pub max_batch_events: usize,
    /// Most client events one connection may send per second (Pusher's 10); more close
    /// it with 4301.
    #[serde(default = "default_client_events_per_second")]
    pub client_events_per_second: usize,
    /// Where Pusher's webhooks go (`[[apps.NAME.pusher.webhooks]]`, one table each);
    /// none by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<RawPusherWebhook>,
}

/// One Pusher webhook: its URL, the events it wants, and how they are batched and retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPusherWebhook {
    /// Where batches are POSTed, signed with the app's Pusher secret.
    pub url: String,
    /// The events it wants, by Pusher's names: `channel_occupied`, `channel_vacated`,
    /// `member_added`, `member_removed`, `client_event`, `cache_miss`; default: all.
    #[serde(default = "all_event_types")]
    pub event_types: Vec<String>,
    /// Most events in one request.
    #[serde(default = "default_webhook_batch")]
    pub max_batch: usize,
    /// Milliseconds an event may wait for its batch to fill.
    #[serde(default = "default_webhook_delay_ms")]
    pub max_delay_ms: u64,
    /// Most events waiting to be sent; more are dropped and counted.
    #[serde(default = "default_webhook_queue")]
    pub queue: usize,
    /// Milliseconds one request may take.
    #[serde(default = "default_webhook_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts per batch (exponential backoff between them) before it is dropped.
    #[serde(default = "default_webhook_attempts")]
    pub max_attempts: u32,
}

fn all_event_types() -> Vec<String> {
    EVENT_TYPES.iter().map(|name| (*name).to_owned()).collect()
}

fn default_webhook_batch() -> usize {
    100
}

fn default_webhook_delay_ms() -> u64 {
    1000
}

fn default_webhook_queue() -> usize {
    10_000
}

fn default_webhook_timeout_ms() -> u64 {
    5000
}

fn default_webhook_attempts() -> u32 {
    5
}

/// The settings of checked webhook tables; a URL that does not parse (reported by the
/// check) leaves its webhook out.
pub fn webhook_settings(raw: &[RawPusherWebhook]) -> Vec<PusherWebhookSettings> {
    raw.iter()
        .filter_map(|hook| {
            Some(PusherWebhookSettings {
                url: reqwest::Url::parse(&hook.url).ok()?,
                event_types: EVENT_TYPES
                    .iter()
                    .copied()
                    .filter(|name| hook.event_types.iter().any(|wanted| wanted == name))
                    .collect(),
                max_batch: hook.max_batch,
                max_delay: Duration::from_millis(hook.max_delay_ms),
                queue: hook.queue,
                timeout: Duration::from_millis(hook.timeout_ms),
                max_attempts: hook.max_attempts,
            })
        })
        .collect()
}

fn check_webhook(error: &mut impl FnMut(&[&str], String), name: &str, hook: &RawPusherWebhook) {
    let path = |key: &'static str| ["apps", name, "pusher", "webhooks", key];
    if !super::checks::is_http_url(&hook.url) {
        error(
            &path("url"),
            format!("{:?} is not an http:// or https:// URL", hook.url),
        );
    }
    for wanted in &hook.event_types {
        if !EVENT_TYPES.contains(&wanted.as_str()) {
            error(
                &path("event_types"),
                format!("{wanted:?} is not one of {}", EVENT_TYPES.join(", ")),
            );
        }
    }
    if hook.event_types.is_empty() {
        error(
            &path("event_types"),
            "lists no event: leave the webhook out instead".into(),
        );
    }
    if !(1..=10_000).contains(&hook.max_batch) {
        error(&path("max_batch"), "must be between 1 and 10000".into());
    }
    if hook.max_delay_ms > 60_000 {
        error(&path("max_delay_ms"), "must be at most 60000".into());
    }
    if hook.queue == 0 {
        error(&path("queue"), "must be at least 1".into());
    }
    if !(1..=300_000).contains(&hook.timeout_ms) {
        error(&path("timeout_ms"), "must be between 1 and 300000".into());
    }
    if hook.max_attempts == 0 {
        error(&path("max_attempts"), "must be at least 1".into());
    }
}

fn yes() -> bool {
    true
}

fn default_presence_members() -> usize {
    100
}

fn default_member_info_bytes() -> usize {
    1024
}

fn default_event_bytes() -> usize {
    10 * 1024
}

fn default_trigger_channels() -> usize {
    100
}

fn default_batch_events() -> usize {
    10
}

fn default_client_events_per_second() -> usize {
    10
}

/// The resolved policy of a checked table.
pub(super) fn policy(raw: &RawPusher) -> Arc<PusherPolicy> {
    Arc::new(PusherPolicy {
        app_id: raw.app_id.as_str().into(),
        key: raw.key.as_str().into(),
        secret: raw.secret.as_str().into(),
        client_events: raw.client_events,
        enabled: raw.enabled,
        max_connections: raw.max_connections,
        max_presence_members: raw.max_presence_members,
        max_member_info_bytes: raw.max_member_info_bytes,
        max_event_bytes: raw.max_event_bytes,
        max_trigger_channels: raw.max_trigger_channels,
        max_batch_events: raw.max_batch_events,
        client_events_per_second: raw.client_events_per_second,
    })
}

/// True for the characters an app id or key may use: they appear in URL paths, and
/// Pusher's SDKs put them there unencoded.
fn is_id_text(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Check every app's `[pusher]` table: ids and keys that a URL carries, a secret, sane
/// limits, and no app id or key shared by two apps (the API and clients find the app by
/// them). `auth` may be left out only by an app with this table.
pub(super) fn check(
    error: &mut impl FnMut(&[&str], String),
    apps: &std::collections::BTreeMap<String, RawApp>,
) {
    let mut ids: HashMap<&str, &str> = HashMap::new();
    let mut keys: HashMap<&str, &str> = HashMap::new();
    for (name, app) in apps {
        let Some(pusher) = &app.pusher else {
            if app.auth.is_none() {
                error(
                    &["apps", name, "auth"],
                    "missing: say how native clients authenticate (\"token\", \"webhook\", \"mswoole-des\", or \"none\" for development); only an app with an [apps.NAME.pusher] table may leave it out".into(),
                );
            }
            continue;
        };
        let path = |key: &'static str| ["apps", name.as_str(), "pusher", key];
        if !is_id_text(&pusher.app_id) {
            error(
                &path("app_id"),
                "must be 1-64 characters from A-Z a-z 0-9 - _ .".into(),
            );
        }
        if !is_id_text(&pusher.key) {
            error(
                &path("key"),
                "must be 1-64 characters from A-Z a-z 0-9 - _ .".into(),
            );
        }
        if pusher.secret.is_empty() {
            error(
                &path("secret"),
                "must not be empty: it signs every channel authorization and API request".into(),
            );
        }
        if pusher.secret == pusher.key {
            error(
                &path("secret"),
                "must differ from the key: the key is public (every page holds it)".into(),
            );
        }
        if let Some(other) = ids.insert(&pusher.app_id, name) {
            error(
                &path("app_id"),
                format!(
                    "app {other:?} has this app_id too: the HTTP API finds an app by its app_id"
                ),
            );
        }
        if let Some(other) = keys.insert(&pusher.key, name) {
            error(
                &path("key"),
                format!("app {other:?} has this key too: clients find an app by its key"),
            );
        }
        let limits = [
            ("max_presence_members", pusher.max_presence_members),
            ("max_member_info_bytes", pusher.max_member_info_bytes),
            ("max_event_bytes", pusher.max_event_bytes),
            ("max_trigger_channels", pusher.max_trigger_channels),
            ("max_batch_events", pusher.max_batch_events),
            ("client_events_per_second", pusher.client_events_per_second),
        ];
        for (key, value) in limits {
            if value == 0 {
                error(&path(key), "must be at least 1".into());
            }
        }
        for hook in &pusher.webhooks {
            check_webhook(error, name, hook);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigErrors, Overrides};

    fn load(text: &str) -> Result<Config, ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pushhub.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), [], &Overrides::default())
    }

    fn errors(text: &str) -> Vec<(String, String)> {
        load(text)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| (e.key, e.message))
            .collect()
    }

    #[test]
    fn a_pusher_table_resolves_with_pushers_defaults_and_may_stand_without_auth() {
        let config = load(
            "[apps.chat]\n[apps.chat.pusher]\napp_id = \"1001\"\nkey = \"k\"\nsecret = \"s\"\n",
        )
        .unwrap();
        let app = &config.apps[0].policy;
        assert_eq!(
            app.auth,
            crate::hub::AuthMode::Token,
            "no native client gets in"
        );
        let pusher = app.pusher.as_deref().unwrap();
        assert_eq!((&*pusher.app_id, &*pusher.key), ("1001", "k"));
        assert!(pusher.enabled && !pusher.client_events);
        assert_eq!(pusher.max_connections, 0);
        assert_eq!(pusher.max_presence_members, 100);
        assert_eq!(pusher.max_member_info_bytes, 1024);
        assert_eq!(pusher.max_event_bytes, 10 * 1024);
        assert_eq!(pusher.max_trigger_channels, 100);
        assert_eq!(pusher.max_batch_events, 10);
        let apps = crate::hub::Apps::new(
            config
                .apps
                .iter()
                .map(|a| crate::services::app_settings(a, None))
                .collect(),
            None,
        );
        assert_eq!(&*apps.by_pusher_id("1001").unwrap().name, "chat");
        assert_eq!(&*apps.by_pusher_key("k").unwrap().name, "chat");
        assert!(apps.by_pusher_key("1001").is_none());
    }

    #[test]
    fn clashes_and_empty_credentials_are_located() {
        let found = errors(
            "[apps.a]\n[apps.a.pusher]\napp_id = \"1\"\nkey = \"k\"\nsecret = \"\"\n\
             [apps.b]\n[apps.b.pusher]\napp_id = \"1\"\nkey = \"k\"\nsecret = \"s\"\nmax_batch_events = 0\n\
             [apps.c]\nmax_frames_per_second = 5\n\
             [apps.d]\n[apps.d.pusher]\napp_id = \"x/y\"\nkey = \"z\"\nsecret = \"z\"\n",
        );
        let keys: Vec<&str> = found.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "apps.a.pusher.secret",
                "apps.b.pusher.app_id",
                "apps.b.pusher.key",
                "apps.b.pusher.max_batch_events",
                "apps.c.auth",
                "apps.d.pusher.app_id",
                "apps.d.pusher.secret",
            ],
            "{found:?}"
        );
        assert!(found[1].1.contains("app \"a\""), "{found:?}");
        assert!(found[4].1.contains("pusher"), "{found:?}");
    }

    #[test]
    fn webhooks_default_to_every_event_and_refuse_unknown_ones() {
        let base = "[apps.a]\n[apps.a.pusher]\napp_id = \"1\"\nkey = \"k\"\nsecret = \"s\"\n";
        let config = load(&format!(
            "{base}[[apps.a.pusher.webhooks]]\nurl = \"http://127.0.0.1:9/hook\"\n\
             [[apps.a.pusher.webhooks]]\nurl = \"http://127.0.0.1:9/other\"\nevent_types = [\"member_added\"]\n"
        ))
        .unwrap();
        let raw = config.apps[0]
            .raw
            .as_ref()
            .unwrap()
            .pusher
            .as_ref()
            .unwrap();
        let settings = super::webhook_settings(&raw.webhooks);
        assert_eq!(settings[0].event_types, super::EVENT_TYPES);
        assert_eq!(settings[1].event_types, ["member_added"]);
        assert_eq!(settings[0].max_batch, 100);
        assert_eq!(settings[0].max_attempts, 5);
        let found = errors(&format!(
            "{base}[[apps.a.pusher.webhooks]]\nurl = \"ftp://x\"\nevent_types = [\"channel_existence\"]\nmax_attempts = 0\n"
        ));
        let keys: Vec<&str> = found.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "apps.a.pusher.webhooks.url",
                "apps.a.pusher.webhooks.event_types",
                "apps.a.pusher.webhooks.max_attempts",
            ],
            "{found:?}"
        );
    }
}
