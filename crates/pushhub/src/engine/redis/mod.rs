//! The Redis engine: the contracts of [`crate::engine`] kept across many nodes sharing
//! one Redis (or Valkey), over the connections of [`crate::redis`].

mod node_bus;
mod presence;

pub use node_bus::RedisNodeBus;
pub use presence::RedisPresence;
