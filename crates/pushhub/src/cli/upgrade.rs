//! `pushhub upgrade`: ask a running server to hand its listeners to the binary now at the
//! path it was started from (`POST /v1/admin/upgrade`; docs/operations.md).

use reqwest::Method;
use serde_json::Value;

use super::{text, ApiClient, CliError};

impl ApiClient {
    /// Upgrade the server; the answer, and the line to print for it.
    pub async fn upgrade(&self) -> Result<(Value, String), CliError> {
        let answer = self.call(Method::POST, "/v1/admin/upgrade", &[]).await?;
        let line = format!(
            "upgraded: pid {} ({}) ready in {} ms; the old process closes its clients with 1012 (reconnect now), drains and exits\n",
            text(&answer["pid"]),
            text(&answer["program"]),
            text(&answer["ready_ms"]),
        );
        Ok((answer, line))
    }
}
