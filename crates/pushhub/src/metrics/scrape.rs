//! The numbers read at scrape time: copies of the server's own counters and snapshots,
//! written out in Prometheus form. Reading them costs the hot paths nothing; the counters
//! themselves are the plain atomics `/v1/stats` shows.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::process::ProcessSample;
use crate::engine::BrokerStats;
use crate::scheduler::cron::CronSnapshot;
use crate::scheduler::TimersSnapshot;
use crate::stats::StatsSnapshot;
use crate::work_counters::Histogram;

/// Everything one scrape reads, gathered before it is written.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The hub's and transports' counters.
    pub stats: StatsSnapshot,
    /// What the broker holds.
    pub broker: BrokerStats,
    /// The broker's and presence's kinds.
    pub engine: (&'static str, &'static str),
    /// Whether the engine reaches what it needs now (`/healthz`'s answer).
    pub engine_up: bool,
    /// Timers.
    pub timers: TimersSnapshot,
    /// Cron jobs.
    pub cron: CronSnapshot,
    /// Online users per app label (configured apps, and [`super::DYNAMIC_APP`]).
    pub users: Vec<(String, u64)>,
    /// Outgoing HTTP calls by kind and outcome, from their records.
    pub calls: Vec<(&'static str, &'static str, Histogram)>,
    /// The process's memory and CPU.
    pub process: ProcessSample,
    /// Seconds since the server started.
    pub uptime_secs: f64,
}

impl Collector for Snapshot {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut out = Out(encoder);
        let s = &self.stats;
        out.gauge_info(
            "build_info",
            "The running version and engine (always 1)",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("broker", self.engine.0),
                ("presence", self.engine.1),
            ],
        )?;
        out.gauge(
            "uptime_seconds",
            "Seconds since the server started",
            self.uptime_secs,
        )?;
        out.gauge(
            "engine_up",
            "1 while the engine reaches what it needs (Redis answers), else 0",
            u64::from(self.engine_up),
        )?;
        out.counter(
            "connections_opened",
            "Client connections attached since start",
            s.connections_total,
        )?;
        out.labelled_gauge("users_online", "Users with at least one connection, by app (presence: across nodes with the Redis engine)", "app", &self.users)?;
        out.counter(
            "messages_published",
            "Messages this node published for its API and clients, one per push per target channel",
            s.publishes_accepted,
        )?;
        out.counter(
            "publications_dispatched",
            "Publications (from any node) handed to this node's subscribers of their channel",
            s.messages_published,
        )?;
        out.counter(
            "messages_delivered",
            "Messages queued to client connections",
            s.deliveries,
        )?;
        out.labelled_counter(
            "messages_dropped",
            "Frames not delivered, by reason: slow_consumer (thrown away with a queue that overflowed), closing (the connection was already closing)",
            "reason",
            &[("slow_consumer", s.dropped_slow_consumer), ("closing", s.dropped_closing)],
        )?;
        out.counter(
            "frames_received",
            "Frames received from clients",
            s.frames_in,
        )?;
        out.unit_counter(
            "received",
            "Bytes received from clients after the handshake",
            Unit::Bytes,
            s.bytes_in,
        )?;
        out.unit_counter(
            "sent",
            "Bytes written to clients after the handshake",
            Unit::Bytes,
            s.bytes_out,
        )?;
        out.counter(
            "slow_consumer_disconnects",
            "Connections closed (4001) because their send queue overflowed",
            s.slow_consumers,
        )?;
        out.counter(
            "rate_limited_connections",
            "Connections closed (1008) for sending too fast",
            s.rate_limited_connections,
        )?;
        out.counter(
            "rate_limited_requests",
            "SSE and long-poll requests refused (429) for coming too fast from one address",
            s.rate_limited_requests,
        )?;
        out.labelled_counter(
            "resumes",
            "Connections that asked to resume, by whether the history covered the gap",
            "recovered",
            &[("true", s.resumes_recovered), ("false", s.resumes_lost)],
        )?;
        out.counter(
            "replayed_messages",
            "Missed messages sent to resuming clients",
            s.replayed,
        )?;
        out.gauge(
            "outbox_high_water_frames",
            "Most frames one connection's send queue held at once (connections that left)",
            s.outbox_peak_frames,
        )?;
        out.unit_gauge(
            "outbox_high_water",
            "Most bytes one connection's send queue held at once (connections that left)",
            Unit::Bytes,
            s.outbox_peak_bytes,
        )?;
        out.gauge(
            "history_streams",
            "Channel streams the broker holds",
            self.broker.streams,
        )?;
        out.gauge(
            "history_messages",
            "Messages held in channel histories",
            self.broker.history_messages,
        )?;
        out.unit_gauge(
            "history",
            "Bytes of channel history held",
            Unit::Bytes,
            self.broker.history_bytes,
        )?;
        out.counter(
            "history_evictions",
            "Messages evicted from histories because a byte bound was reached",
            self.broker.history_evictions,
        )?;
        let t = &self.timers;
        out.gauge(
            "timers_pending",
            "Timers waiting for their due time (first attempts and retries)",
            t.pending,
        )?;
        out.gauge("timers_running", "Timer callbacks in flight", t.running)?;
        out.counter("timers_created", "Timers created since start", t.created)?;
        out.counter(
            "timer_attempts",
            "Timer callbacks made (fired), retries included",
            t.attempts,
        )?;
        out.counter(
            "timers_succeeded",
            "Timers whose callback succeeded",
            t.succeeded,
        )?;
        out.counter("timers_failed", "Timers that failed for good", t.failed)?;
        out.counter(
            "timer_retries",
            "Timer callbacks that failed and were scheduled again",
            t.retries,
        )?;
        out.counter("timers_cancelled", "Timers cancelled", t.cancelled)?;
        out.counter(
            "timer_store_errors",
            "Timer store operations that failed",
            t.store_errors,
        )?;
        out.gauge(
            "timer_store_damaged",
            "1 once the timer store was found damaged while running",
            u64::from(t.store_damaged),
        )?;
        let c = &self.cron;
        out.gauge("cron_jobs", "Cron jobs, over all apps", c.jobs)?;
        out.gauge("cron_running", "Cron runs in flight", c.running)?;
        out.labelled_counter(
            "cron_runs",
            "Cron runs by result: started, succeeded (2xx), failed, skipped (overlap)",
            "result",
            &[
                ("started", c.runs),
                ("succeeded", c.succeeded),
                ("failed", c.failed),
                ("skipped", c.skipped),
            ],
        )?;
        let p = &self.process;
        out.unit_gauge(
            "process_resident_memory",
            "Resident memory of the process",
            Unit::Bytes,
            p.resident_bytes,
        )?;
        out.unit_gauge(
            "process_virtual_memory",
            "Virtual memory of the process",
            Unit::Bytes,
            p.virtual_bytes,
        )?;
        out.unit_counter(
            "process_cpu",
            "CPU time the process used, user and system",
            Unit::Seconds,
            p.cpu_seconds,
        )?;
        out.gauge(
            "process_open_fds",
            "File descriptors the process holds open",
            p.open_fds,
        )?;
        out.gauge(
            "process_max_fds",
            "The process's limit on open file descriptors",
            p.max_fds,
        )?;
        out.gauge("process_threads", "Threads of the process", p.threads)?;
        out.call_histograms(&self.calls)?;
        Ok(())
    }
}

/// A thin writer of single values and one-label families.
struct Out<'a>(DescriptorEncoder<'a>);

impl Out<'_> {
    /// The outgoing calls' latency histograms, labelled by kind and outcome (nothing
    /// before the first call, as for any labelled family).
    fn call_histograms(
        &mut self,
        calls: &[(&'static str, &'static str, Histogram)],
    ) -> Result<(), std::fmt::Error> {
        let mut encoder = self.0.encode_descriptor(
            "outgoing_call_duration",
            "HTTP calls pushhub made (RPC, backend questions, webhooks, auth webhook, timers, cron) by kind and outcome, with their latency",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (kind, outcome, histogram) in calls {
            let labels = [("kind", *kind), ("outcome", *outcome)];
            encoder
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    histogram.sum,
                    histogram.count,
                    &histogram.buckets,
                    None,
                )?;
        }
        Ok(())
    }

    fn write<M: EncodeMetric>(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        metric: M,
    ) -> Result<(), std::fmt::Error> {
        let encoder = self
            .0
            .encode_descriptor(name, help, unit, metric.metric_type())?;
        metric.encode(encoder)
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
        self.write(name, help, None, ConstCounter::new(value))
    }

    fn unit_counter<V>(
        &mut self,
        name: &str,
        help: &str,
        unit: Unit,
        value: V,
    ) -> Result<(), std::fmt::Error>
    where
        ConstCounter<V>: EncodeMetric,
    {
        self.write(name, help, Some(&unit), ConstCounter::new(value))
    }

    fn gauge<V>(&mut self, name: &str, help: &str, value: V) -> Result<(), std::fmt::Error>
    where
        ConstGauge<V>: EncodeMetric,
    {
        self.write(name, help, None, ConstGauge::new(value))
    }

    fn unit_gauge(
        &mut self,
        name: &str,
        help: &str,
        unit: Unit,
        value: u64,
    ) -> Result<(), std::fmt::Error> {
        self.write(name, help, Some(&unit), ConstGauge::new(value))
    }

    fn gauge_info(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<(), std::fmt::Error> {
        let mut encoder = self
            .0
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        let labels: Vec<(&str, &str)> = labels.to_vec();
        let family = encoder.encode_family(&labels)?;
        ConstGauge::new(1u64).encode(family)
    }

    fn labelled<M: EncodeMetric, V: Copy>(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        key: &str,
        values: &[(impl AsRef<str>, V)],
        make: impl Fn(V) -> M,
    ) -> Result<(), std::fmt::Error> {
        let mut encoder = self.0.encode_descriptor(name, help, None, kind)?;
        for (label, value) in values {
            let labels = [(key, label.as_ref())];
            make(*value).encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn labelled_counter(
        &mut self,
        name: &str,
        help: &str,
        key: &str,
        values: &[(&str, u64)],
    ) -> Result<(), std::fmt::Error> {
        self.labelled(
            name,
            help,
            MetricType::Counter,
            key,
            values,
            ConstCounter::new,
        )
    }

    fn labelled_gauge(
        &mut self,
        name: &str,
        help: &str,
        key: &str,
        values: &[(String, u64)],
    ) -> Result<(), std::fmt::Error> {
        self.labelled(name, help, MetricType::Gauge, key, values, ConstGauge::new)
    }
}
