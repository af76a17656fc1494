//! The API side of metrics: timing every API request by its route template, and writing
//! a scrape.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
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

/// Time a request and count it under its route template (`/v1/apps/{app}/users`, never
/// the path a client sent), method and status. Methods outside the standard set count
/// as `other`, so a client cannot invent label values.
pub async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let endpoint = Endpoint(request.extensions().get::<MatchedPath>().cloned());
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let response = next.run(request).await;
    let labels = ApiLabels {
        endpoint,
        method,
        status: response.status().as_u16(),
    };
    super::global()
        .api_requests
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
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
