//! The raw TCP listener's clients: the native dialect, which names its app and user in a
//! first `connect` frame since a socket has no URL.

use std::sync::Arc;

use super::GatewayState;
use crate::dialect::native::{self, NativeClient, NATIVE};
use crate::dialect::Renderer;
use crate::disconnect::Disconnect;
use crate::hub::Render;
use crate::transport::tcp::Control;
use crate::transport::{ClientHandler, Farewell, Framer};

/// What the raw TCP listener asks of the gateway for each socket it accepts.
#[derive(Clone)]
pub struct TcpGateway {
    state: GatewayState,
    native: Arc<dyn Render>,
}

impl TcpGateway {
    /// Native clients in the listener's framing (`framer`), admitted under `state`'s
    /// connection limit.
    pub fn new(state: GatewayState, framer: &'static dyn Framer) -> Self {
        Self {
            state,
            native: Renderer::shared(&NATIVE, framer),
        }
    }

    /// The native dialect's heartbeat and closing frame, which raw TCP sends where
    /// WebSocket has control frames.
    pub fn control() -> Control {
        Control {
            ping: native::PING,
            goodbye: native::closing_frame,
        }
    }

    /// A handler that sends `reason` in an error frame and closes.
    pub fn refusal(&self, reason: Disconnect) -> Box<dyn ClientHandler> {
        Box::new(self.state.refuse(reason, Farewell::plain))
    }

    /// The handler for a socket just accepted: a refusal when the server is full (an error
    /// frame, then close), otherwise a native client that must send `connect` within the
    /// handshake timeout.
    pub fn client(&self) -> Box<dyn ClientHandler> {
        if let Some(reason) = self.state.admission() {
            return Box::new(self.state.refuse(reason, Farewell::plain));
        }
        Box::new(NativeClient::awaiting_connect(
            self.state.hub.clone(),
            self.native.clone(),
            self.state.before_handshake(),
        ))
    }
}
