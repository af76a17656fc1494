//! Dialects: each wire protocol pushhub speaks to clients (DESIGN.md principle 1).
//!
//! A dialect parses client frames into hub calls and encodes hub publications into its own
//! payloads. It has no business rules (those are the hub's) and no framing (the transport's):
//! [`Renderer`] joins a dialect's [`Encode`] with a transport's [`Framer`] into the hub's
//! [`Render`], one per (dialect, transport) pair, so fan-out renders each pair once.

pub mod calls;
pub mod jdserver;
pub mod mswoole;
pub mod native;
pub mod pusher;
pub mod pushserve;

use std::sync::Arc;

use bytes::Bytes;

use crate::auth::Identity;
use crate::disconnect::Disconnect;
use crate::hub::{
    AppPolicy, AppSettings, ConnInfo, ConnectRequest, Cursor, FormatId, Grant, Hub, Publication,
    Render, Session,
};
use crate::transport::{Framer, Link, Liveness, StreamStart};

/// The connection mechanics an app asks for, once a client is known to belong to it.
pub fn liveness(app: &AppPolicy) -> Liveness {
    Liveness {
        heartbeat: app.heartbeat,
        idle_timeout: app.idle_timeout,
        max_message_bytes: app.max_frame_bytes,
        max_frames_per_second: app.max_frames_per_second,
        handshake_deadline: None,
        credential_expiry: None,
    }
}

/// Attach a client to the hub through `link`, in the wire format of `renderer` (which
/// also names its transport and dialect for operators): `greet` queues the dialect's
/// greeting before anything else, and the transport learns where the client's stream
/// starts. A refusal is the reason to close. The gateway has held the request's origin to
/// the app's allowed origins already.
pub async fn attach(
    hub: &Hub,
    link: &Link,
    renderer: &Arc<dyn Render>,
    app: Arc<AppSettings>,
    identity: Identity,
    since: Option<Cursor>,
    greet: impl FnOnce(&ConnInfo),
) -> Result<Session, Disconnect> {
    let request = ConnectRequest {
        app,
        user: Some(identity.user),
        groups: identity.groups,
        grant: Grant {
            rooms: identity.rooms,
            info: identity.info.map(Arc::new),
        },
        outbox: link.outbox().clone(),
        renderer: renderer.clone(),
        since,
        max_replay: link.replay_limit(),
        addr: link.peer().addr,
    };
    hub.connect(request, |info| {
        greet(info);
        link.attached(StreamStart {
            cursor: info.start_cursor(),
            recovered: info.recovered,
        });
    })
    .await
    .map_err(|e| Disconnect::from(&e))
}

/// Encodes a publication as this dialect's message payload (before transport framing).
pub trait Encode: Send + Sync + 'static {
    /// The payload bytes for `publication`.
    fn encode(&self, publication: &Publication) -> Vec<u8>;

    /// The dialect's name, as metrics, the admin API and the dashboard show a connection's.
    fn name(&self) -> &'static str;

    /// Whether the dialect renders presence member changes (see [`Render::shows_members`]).
    fn shows_members(&self) -> bool {
        false
    }
}

/// A dialect's encoding inside a transport's framing: one wire format.
pub struct Renderer {
    encoder: &'static dyn Encode,
    framer: &'static dyn Framer,
    format: FormatId,
}

impl Renderer {
    /// The format of `encoder` over `framer`. Create each pair once per server and share it.
    pub fn shared(encoder: &'static dyn Encode, framer: &'static dyn Framer) -> Arc<dyn Render> {
        Arc::new(Self {
            encoder,
            framer,
            format: FormatId::unique(),
        })
    }
}

impl Render for Renderer {
    fn format(&self) -> FormatId {
        self.format
    }

    fn render(&self, publication: &Publication) -> Bytes {
        self.framer.frame_text(&self.encoder.encode(publication))
    }

    fn kind(&self) -> (&'static str, &'static str) {
        (self.framer.name(), self.encoder.name())
    }

    fn shows_members(&self) -> bool {
        self.encoder.shows_members()
    }
}
