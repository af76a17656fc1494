//! The API side of metrics: timing every API request by its route template, and writing
//! a scrape.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use prometheus_client::registry::Registry;

use super::scrape::Snapshot;
use super::ApiLabels;

/// The `Content-Type` of a scrape: Prometheus's text format, version 0.0.4.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A request's route template as a label value: the router's own shared text, so
/// labelling a request copies nothing (`unmatched` when no route matched).
#[derive(Debug, Clone)]
pub struct Endpoint(Option<MatchedPath>);

impl Endpoint {
    /// The route template `request` matched, if a route matched it.
    pub fn of(request: &Request) -> Self {
        Self(request.extensions().get::<MatchedPath>().cloned())
    }

    /// The template's text.
    pub fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for Endpoint {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Endpoint {}

impl std::hash::Hash for Endpoint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Endpoint {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// A request's method as a label value: methods outside the standard set count as
/// `other`, so a client cannot invent label values.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Count a request that began at `started` under its route template (`/v1/apps/{app}/users`,
/// never the path a client sent), method label and status.
pub fn observe(endpoint: Endpoint, method: &'static str, status: u16, started: Instant) {
    let labels = ApiLabels {
        endpoint,
        method,
        status,
    };
    super::global()
        .api_requests
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
}

/// The text of one scrape: the recorded metrics and `snapshot`, every name under the
/// `pushhub_` prefix.
pub fn render(snapshot: Snapshot) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("pushhub");
    super::global().register(&mut registry);
    registry.register_collector(Box::new(snapshot));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}
