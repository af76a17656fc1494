//! Calls from pushhub to an app's own backend: lifecycle events ([`events`]) and Pusher's
//! webhooks ([`pusher_webhooks`]), RPC frames
//! proxied to it ([`rpc`], answered as [`rpc_answer`] reads it), room
//! joins and client messages it decides ([`rooms`], [`send`]), each request made the same way ([`call`]) and signed so
//! the backend can trust what pushhub says about the caller ([`signature`]).
//!
//! pushhub keeps application logic out of the push server (MSwoole ran its controllers
//! inside it): the backend stays the place where business rules live, and pushhub only
//! carries frames to it and answers back.

pub mod call;
pub mod events;
pub mod pusher_webhooks;
pub mod retry;
pub mod rooms;
pub mod rpc;
pub mod rpc_answer;
pub mod send;
pub mod signature;
