//! Server-wide counters, shared by the hub and the transports.
//!
//! Plain relaxed atomics: each counter is independent and read only for reporting, so no
//! ordering between them is promised or needed.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Counters every part of the server bumps; one instance per server.
#[derive(Debug, Default)]
pub struct Stats {
    connections: AtomicU64,
    connections_total: AtomicU64,
    messages_published: AtomicU64,
    publishes_accepted: AtomicU64,
    deliveries: AtomicU64,
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    slow_consumers: AtomicU64,
    replayed: AtomicU64,
    rate_limited_connections: AtomicU64,
    rate_limited_requests: AtomicU64,
    resumes_recovered: AtomicU64,
    resumes_lost: AtomicU64,
    dropped_slow_consumer: AtomicU64,
    dropped_closing: AtomicU64,
    outbox_peak_frames: AtomicU64,
    outbox_peak_bytes: AtomicU64,
}

/// What one connection's send queue went through, counted under its own lock while it
/// lived and handed to [`Stats::outbox_closed`] when it leaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxTally {
    /// Frames dropped when the queue overflowed.
    pub dropped_overflow: u64,
    /// Frames refused because the connection was closing.
    pub dropped_closing: u64,
    /// Most frames queued at once.
    pub peak_frames: u64,
    /// Most bytes queued at once.
    pub peak_bytes: u64,
}

/// A point-in-time copy of [`Stats`], as `GET /v1/stats` shows it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Connections attached to the hub now.
    pub connections: u64,
    /// Connections attached since start.
    pub connections_total: u64,
    /// Messages published (one per push per target channel).
    pub messages_published: u64,
    /// Messages queued to connections.
    pub deliveries: u64,
    /// Channel publishes this node made for its API and clients (one per push per
    /// target channel), whether or not anyone was subscribed.
    pub publishes_accepted: u64,
    /// Frames received from clients.
    pub frames_in: u64,
    /// Bytes received from clients after the handshake.
    pub bytes_in: u64,
    /// Bytes written to clients after the handshake.
    pub bytes_out: u64,
    /// Connections closed because they could not keep up.
    pub slow_consumers: u64,
    /// Missed messages sent to resuming clients.
    pub replayed: u64,
    /// Connections closed with 1008 for sending frames too fast or a message in too many
    /// fragments.
    pub rate_limited_connections: u64,
    /// SSE and long-poll requests refused with 429 for coming too fast from one address.
    pub rate_limited_requests: u64,
    /// Connections that asked to resume and got everything they missed.
    pub resumes_recovered: u64,
    /// Connections that asked to resume where the history no longer reached
    /// (`recovered:false`).
    pub resumes_lost: u64,
    /// Frames thrown away with a queue that overflowed (its connection is cut off as a
    /// slow consumer).
    pub dropped_slow_consumer: u64,
    /// Frames refused because their connection was already closing.
    pub dropped_closing: u64,
    /// Most frames one connection's send queue held at once, over connections that left.
    pub outbox_peak_frames: u64,
    /// Most bytes one connection's send queue held at once, over connections that left.
    pub outbox_peak_bytes: u64,
}

impl Stats {
    /// A connection attached to the hub.
    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
    }

    /// A connection left the hub.
    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Relaxed);
    }

    /// Connections attached now.
    pub fn connections(&self) -> u64 {
        self.connections.load(Relaxed)
    }

    /// One message was published to one channel and queued to `deliveries` connections.
    pub fn published(&self, deliveries: u64) {
        self.messages_published.fetch_add(1, Relaxed);
        self.deliveries.fetch_add(deliveries, Relaxed);
    }

    /// This node published a message to `channels` channels (once per push, not per
    /// delivery).
    pub fn accepted(&self, channels: u64) {
        self.publishes_accepted.fetch_add(channels, Relaxed);
    }

    /// A client frame of `bytes` bytes arrived.
    pub fn frame_in(&self) {
        self.frames_in.fetch_add(1, Relaxed);
    }

    /// `bytes` arrived from a client.
    pub fn bytes_in(&self, bytes: usize) {
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
    }

    /// `bytes` were written to a client.
    pub fn bytes_out(&self, bytes: usize) {
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
    }

    /// A connection was cut off for falling behind.
    pub fn slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Relaxed);
    }

    /// `count` missed messages were queued to a resuming client.
    pub fn replayed(&self, count: u64) {
        self.replayed.fetch_add(count, Relaxed);
    }

    /// A connection was closed for flooding (frame rate or fragments).
    pub fn rate_limited_connection(&self) {
        self.rate_limited_connections.fetch_add(1, Relaxed);
    }

    /// An SSE or long-poll request was refused for coming too fast from its address.
    pub fn rate_limited_request(&self) {
        self.rate_limited_requests.fetch_add(1, Relaxed);
    }

    /// A connection asked to resume; `recovered` says whether the history covered the gap.
    pub fn resumed(&self, recovered: bool) {
        let counter = if recovered {
            &self.resumes_recovered
        } else {
            &self.resumes_lost
        };
        counter.fetch_add(1, Relaxed);
    }

    /// A connection left; what its send queue dropped and held at most. Folded in once
    /// per connection rather than per frame, so fan-out touches no shared counter for it.
    pub fn outbox_closed(&self, outbox: OutboxTally) {
        self.dropped_slow_consumer
            .fetch_add(outbox.dropped_overflow, Relaxed);
        self.dropped_closing
            .fetch_add(outbox.dropped_closing, Relaxed);
        self.outbox_peak_frames
            .fetch_max(outbox.peak_frames, Relaxed);
        self.outbox_peak_bytes.fetch_max(outbox.peak_bytes, Relaxed);
    }

    /// Copy every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            connections: self.connections.load(Relaxed),
            connections_total: self.connections_total.load(Relaxed),
            messages_published: self.messages_published.load(Relaxed),
            deliveries: self.deliveries.load(Relaxed),
            publishes_accepted: self.publishes_accepted.load(Relaxed),
            frames_in: self.frames_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            slow_consumers: self.slow_consumers.load(Relaxed),
            replayed: self.replayed.load(Relaxed),
            rate_limited_connections: self.rate_limited_connections.load(Relaxed),
            rate_limited_requests: self.rate_limited_requests.load(Relaxed),
            resumes_recovered: self.resumes_recovered.load(Relaxed),
            resumes_lost: self.resumes_lost.load(Relaxed),
            dropped_slow_consumer: self.dropped_slow_consumer.load(Relaxed),
            dropped_closing: self.dropped_closing.load(Relaxed),
            outbox_peak_frames: self.outbox_peak_frames.load(Relaxed),
            outbox_peak_bytes: self.outbox_peak_bytes.load(Relaxed),
        }
    }
}
