//! What the fuzz targets share: a fresh hub per input, the keys tokens are signed with,
//! and the checks every target makes on what the server would send or close with.
//!
//! Every target feeds arbitrary bytes into a real entry point of the `pushhub` crate (the
//! same functions the server calls on client input) and asserts what must hold; a panic or
//! a failed assertion is a crash that libFuzzer saves under `fuzz/artifacts/TARGET/`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use pushhub::auth::token::TokenKeys;
use pushhub::config::{AppConfig, Config, Overrides};
use pushhub::dialect::{jdserver::JDSERVER, native::NATIVE, Renderer};
use pushhub::disconnect::Disconnect;
use pushhub::engine::memory::{MemoryBroker, MemoryPresence};
use pushhub::engine::Engine;
use pushhub::hub::registry::UserLimit;
use pushhub::hub::{
    AppPolicy, AppSettings, Apps, AuthMode, Hub, Outbox, OutboxLimits, Render, Target,
};
use pushhub::services;
use pushhub::stats::Stats;
use pushhub::transport::{Link, Liveness, Peer, RAW_FRAMER};

/// The HS256 secret of the `secure` app (and of the token target).
pub const SECRET: &str = "fuzz-secret-0123456789abcdef0123";

/// An RSA public key (2048 bits) the token target's key set also holds, so RS256 headers
/// reach the RSA verifier. Its private half was thrown away.
pub const RSA_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEArY+PExpN6yOwzPpSIk2c
HbKb5LIvdT+6WP1iu4Uloxoess3GCUjotI1VV9ivU9aWG/C6jTFvBXbu3qHWvX2P
mIhK5cMzrYOT7ZNG5QOHhJRUgdybFWEs7MCsBF/xiNcUFxLRqmCS4m76SUi07nB1
sH2KN+HS+mrqbFh5ldXNP2fu0ahSV7WSXJ2Zko+nAYLw3vEe4+XXllV7RPdpOM6o
9T2m8BROfp1uV33TnVwrbo1Sa7BlFia9Y7RBuiSqMyDDSPgNVO32jh7UMVM38D21
aUTsLT3P9IlQqocpkUNqMqU6oWJaDGaWO6opoJoI6QRdJ65veK0voAwbgv8zQt41
QwIDAQAB
-----END PUBLIC KEY-----
";

/// A P-256 public key, so ES256 headers reach the EC verifier. Private half thrown away.
pub const EC_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEC4KFmU63AYqWMCC9f2p2/hM2+Oe5
sv5SUsbeoMleMnXw3niLj5lAVmWleWOJs5o+W2LtyN3Rrfk8Kw+VDtgjTg==
-----END PUBLIC KEY-----
";

/// One single-threaded runtime for the whole fuzzing process: the dialect handlers are
/// async, and nothing they do in these targets waits on I/O.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
    })
}

/// The embedded default configuration (app `demo`, development apps on first use).
fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        Config::load(None, Vec::new(), &Overrides::default()).expect("embedded default")
    })
}

/// The key set of the `secure` app: the HS256 secret only (as most deployments).
pub fn hs256_keys() -> Arc<TokenKeys> {
    static KEYS: OnceLock<Arc<TokenKeys>> = OnceLock::new();
    KEYS.get_or_init(|| Arc::new(TokenKeys::new(&[SECRET.into()], &[]).expect("HS256 key")))
        .clone()
}

/// A key set with one key of each algorithm.
pub fn all_keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        TokenKeys::new(
            &[SECRET.into()],
            &[RSA_PUBLIC_PEM.into(), EC_PUBLIC_PEM.into()],
        )
        .expect("HS256, RS256 and ES256 keys")
    })
}

/// The apps of a fuzzing hub: `demo` (auth none, as embedded), `secure` (HS256 tokens),
/// `solo` (one connection per user, the oldest is replaced), and development apps
/// created on first use. Assembled as the server assembles its configuration.
fn apps() -> Apps {
    let config = config();
    let services = services::assemble(config).expect("the embedded default assembles");
    let declared_app =
        |policy: AppPolicy| services::app_settings(&AppConfig { policy, raw: None }, None);
    let mut declared = services.apps;
    declared.push(AppSettings {
        token_keys: hs256_keys(),
        ..declared_app(AppPolicy {
            name: "secure".into(),
            auth: AuthMode::Token,
            ..config.defaults.clone()
        })
    });
    declared.push(declared_app(AppPolicy {
        name: "solo".into(),
        user_limit: Some(UserLimit {
            max: 1,
            kick_oldest: true,
        }),
        ..config.defaults.clone()
    }));
    Apps::new(declared, services.dynamic_apps)
}

/// A fresh hub on the memory engine, so every input starts from the same state (libFuzzer
/// needs a target to be deterministic). `demo:all` has one message in its history, so a
/// client resuming it gets a replay.
pub fn hub() -> Hub {
    let engine = Engine {
        broker: Arc::new(MemoryBroker::new(config().limits.max_history_bytes)),
        presence: Arc::new(MemoryPresence::default()),
        nodes: Arc::new(pushhub::engine::LocalBus),
        idempotency: Arc::new(pushhub::engine::idempotency::MemoryIdempotency::default()),
    };
    let hub = Hub::new(apps(), engine, Arc::new(Stats::default()));
    let data = serde_json::value::RawValue::from_string(r#"{"id":1,"text":"hello"}"#.into())
        .expect("JSON");
    runtime()
        .block_on(hub.publish("demo", &[Target::All], Some("order".into()), data))
        .expect("publish to demo");
    hub
}

/// The native dialect, unframed (as long-poll renders it) so a target reads each payload
/// as it is. Made once: format ids are process-wide.
pub fn native_renderer() -> Arc<dyn Render> {
    static RENDERER: OnceLock<Arc<dyn Render>> = OnceLock::new();
    RENDERER
        .get_or_init(|| Renderer::shared(&NATIVE, &RAW_FRAMER))
        .clone()
}

/// The jdserver dialect, unframed.
pub fn jdserver_renderer() -> Arc<dyn Render> {
    static RENDERER: OnceLock<Arc<dyn Render>> = OnceLock::new();
    RENDERER
        .get_or_init(|| Renderer::shared(&JDSERVER, &RAW_FRAMER))
        .clone()
}

/// A link to a client with no known address whose frames are left unframed (so a target
/// reads payloads as they are), with a queue as large as a server's default.
pub fn link() -> Link {
    let outbox = Arc::new(Outbox::new(OutboxLimits {
        max_messages: 1024,
        max_bytes: 1 << 20,
    }));
    Link::new(outbox, &RAW_FRAMER, Peer::new(None, None))
}

/// Everything queued on `link` so far, and the reason it is closing, if it is.
pub fn drain(link: &Link) -> (Vec<Bytes>, Option<Disconnect>) {
    let mut frames = Vec::new();
    let closing = link.outbox().drain(&mut frames);
    (frames.into_iter().map(|f| f.bytes).collect(), closing)
}

/// Mechanics before a client is known, as the gateway gives them.
pub fn before_handshake() -> Liveness {
    Liveness {
        heartbeat: Duration::from_secs(25),
        idle_timeout: Duration::from_secs(60),
        max_message_bytes: 65536,
        max_frames_per_second: 50,
        handshake_deadline: Some(tokio::time::Instant::now() + Duration::from_secs(10)),
        credential_expiry: None,
    }
}

/// A close code the server may send: one of RFC 6455's it uses, or pushhub's own
/// 4000–4999, with a reason that fits a close frame once cut and a known name.
pub fn check_disconnect(reason: &Disconnect) {
    assert!(
        matches!(reason.code, 1000..=1003 | 1006..=1011 | 4000..=4999),
        "unexpected close code {reason:?}"
    );
    assert_ne!(
        reason.name(),
        "closed",
        "close code without a name: {reason:?}"
    );
    assert!(
        !reason.reason.is_empty(),
        "close without a reason: {reason:?}"
    );
}

/// Split a fuzz input into the text frames a client sends: one per line. The transports
/// hand dialects only valid UTF-8, so invalid sequences are replaced first.
pub fn frames(data: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(data)
        .split('\n')
        .map(str::to_owned)
        .collect()
}

/// Whether `json` nests deeper than a serde_json parse can go on this harness's stack.
///
/// The server parses JSON into a `Value` on a task's 2 MiB stack, within serde_json's 128
/// levels; under ASAN on the script's 256 KiB stack that parse alone overflows past about
/// 100 levels (fuzz finding in `mswoole_des`, seed `regress_deep_plaintext`), so targets
/// leave deeper inputs (counted conservatively: brackets inside strings count too) to the
/// unit tests that parse them on a task-sized stack.
pub fn deeper_than_the_harness_stack(json: &[u8]) -> bool {
    const MAX_HARNESS_DEPTH: usize = 64;
    let (mut depth, mut deepest) = (0usize, 0usize);
    for byte in json {
        match byte {
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest > MAX_HARNESS_DEPTH
}

/// The connections attached to `hub` now.
pub fn connections(hub: &Hub) -> u64 {
    hub.stats().connections()
}
