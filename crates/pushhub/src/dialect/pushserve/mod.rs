//! The push-serve dialect (seed 004), wire-compatible so its users only change host and
//! port.
//!
//! A backend asks `GET /access?uid=&password=` for an access key and hands it to its
//! logged-in client; the client connects to `/ws?uid=&access_key=` and receives each push as
//! `{"topic":…,"number":1,"contents":…}`; the backend pushes with
//! `POST /push?uid=&password=` and a JSON body `{"topic":…,"contents":…}`.
//!
//! The access keys themselves are credentials: [`crate::auth::access_key`]. This folder
//! holds the client (here), its endpoint ([`gateway`]) and the API endpoints ([`api`]).

pub mod api;
pub mod gateway;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::value::RawValue;

use super::Encode;
use crate::auth::Identity;
use crate::disconnect::Disconnect;
use crate::hub::{AppSettings, Hub, Publication, Render, Session};
use crate::transport::{ClientHandler, Link, Liveness};

/// Encodes publications as push-serve messages.
pub struct PushServeEncoder;

/// The push-serve encoder; stateless.
pub static PUSHSERVE: PushServeEncoder = PushServeEncoder;

#[derive(Serialize)]
struct Message<'a> {
    topic: &'a str,
    number: u32,
    contents: &'a RawValue,
}

impl Encode for PushServeEncoder {
    fn encode(&self, p: &Publication) -> Vec<u8> {
        let message = Message {
            topic: p.message.event.as_deref().unwrap_or(""),
            number: 1,
            contents: &p.message.data,
        };
        serde_json::to_vec(&message).unwrap_or_default()
    }

    fn name(&self) -> &'static str {
        "pushserve"
    }
}

/// One push-serve client: attached at open as the uid its access key was checked for.
pub struct PushServeClient {
    hub: Hub,
    app: Arc<AppSettings>,
    uid: Option<String>,
    renderer: Arc<dyn Render>,
    session: Option<Session>,
}

impl PushServeClient {
    /// A client of `app` whose access key for `uid` was already checked.
    pub fn new(hub: Hub, app: Arc<AppSettings>, uid: String, renderer: Arc<dyn Render>) -> Self {
        Self {
            hub,
            app,
            uid: Some(uid),
            renderer,
            session: None,
        }
    }
}

#[async_trait]
impl ClientHandler for PushServeClient {
    async fn on_open(&mut self, link: &Link) -> Result<(), Disconnect> {
        let Some(uid) = self.uid.take() else {
            return Ok(());
        };
        let identity = Identity {
            user: uid,
            groups: Vec::new(),
            rooms: Vec::new(),
            info: None,
            expires: None,
        };
        let session = super::attach(
            &self.hub,
            link,
            &self.renderer,
            self.app.clone(),
            identity,
            None,
            |_| {},
        )
        .await?;
        self.session = Some(session);
        Ok(())
    }

    /// push-serve clients only listen; whatever they send is ignored, as push-serve did.
    async fn on_text(&mut self, _text: &str, _link: &Link) -> Result<(), Disconnect> {
        Ok(())
    }

    fn liveness(&self) -> Liveness {
        super::liveness(&self.app)
    }

    async fn on_close(&mut self, reason: &Disconnect) {
        if let Some(session) = self.session.take() {
            session.close(reason).await;
        }
    }
}
