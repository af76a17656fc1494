//! Latency histogram that can travel between processes.
//!
//! Each worker process records its own histogram; to get true percentiles over
//! all clients the parent must merge the full distributions, not average
//! percentiles, so histograms are shipped as base64 HdrHistogram V2 blobs.

use anyhow::{anyhow, Context, Result};
use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest trackable latency: one hour in microseconds; larger values saturate.
const MAX_MICROS: u64 = 3_600_000_000;

/// A histogram of latencies in microseconds (3 significant digits).
#[derive(Clone, Debug)]
pub struct LatencyHist(Histogram<u64>);

impl Default for LatencyHist {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHist {
    /// An empty histogram with the bounds shared by every worker.
    pub fn new() -> Self {
        Self(Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant histogram bounds"))
    }

    /// Records one latency sample in microseconds.
    pub fn record(&mut self, micros: u64) {
        self.0.saturating_record(micros);
    }

    /// Number of samples recorded.
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Adds all samples of `other` into this histogram.
    pub fn merge(&mut self, other: &LatencyHist) -> Result<()> {
        self.0
            .add(&other.0)
            .map_err(|e| anyhow!("merging histograms: {e:?}"))
    }

    /// Serializes as base64 of the HdrHistogram V2 format.
    pub fn encode(&self) -> Result<String> {
        let mut buf = Vec::new();
        V2Serializer::new()
            .serialize(&self.0, &mut buf)
            .map_err(|e| anyhow!("serializing histogram: {e:?}"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(buf))
    }

    /// Parses the output of [`LatencyHist::encode`].
    pub fn decode(text: &str) -> Result<Self> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .context("histogram base64")?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| anyhow!("deserializing histogram: {e:?}"))?;
        Ok(Self(h))
    }

    /// Percentiles in milliseconds for reports.
    pub fn summary(&self) -> LatencySummary {
        let ms = |us: u64| us as f64 / 1000.0;
        if self.0.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            samples: self.0.len(),
            p50_ms: ms(self.0.value_at_quantile(0.50)),
            p99_ms: ms(self.0.value_at_quantile(0.99)),
            max_ms: ms(self.0.max()),
            mean_ms: self.0.mean() / 1000.0,
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Number of samples behind the figures.
    pub samples: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_merge_keeps_distribution() {
        let mut a = LatencyHist::new();
        let mut b = LatencyHist::new();
        for v in 1..=1000 {
            a.record(v);
        }
        for _ in 0..1000 {
            b.record(100_000);
        }
        let a2 = LatencyHist::decode(&a.encode().unwrap()).unwrap();
        let b2 = LatencyHist::decode(&b.encode().unwrap()).unwrap();
        let mut all = LatencyHist::new();
        all.merge(&a2).unwrap();
        all.merge(&b2).unwrap();
        assert_eq!(all.len(), 2000);
        let s = all.summary();
        // Half the samples are <= 1 ms, the other half are 100 ms.
        assert!(s.p50_ms <= 1.001, "{s:?}");
        assert!((s.p99_ms - 100.0).abs() < 0.1, "{s:?}");
        assert!((s.max_ms - 100.0).abs() < 0.1, "{s:?}");
    }

    #[test]
    fn empty_summary_is_zero() {
        assert_eq!(LatencyHist::new().summary(), LatencySummary::default());
        let e = LatencyHist::decode(&LatencyHist::new().encode().unwrap()).unwrap();
        assert_eq!(e.len(), 0);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(LatencyHist::decode("not base64!").is_err());
        assert!(LatencyHist::decode("AAAA").is_err());
    }
}
