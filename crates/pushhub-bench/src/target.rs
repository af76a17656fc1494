//! Addresses of the server under test.
//!
//! Clients bind their own source address before connecting, so the generator
//! needs the resolved socket address, not just a URL for a library to dial.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use hyper::Uri;

/// The WebSocket endpoint, e.g. `ws://127.0.0.1:8081/v1/ws`.
#[derive(Clone, Debug)]
pub struct WsTarget {
    /// Resolved IPv4 address of the listener.
    pub addr: SocketAddr,
    /// The URL as given, without a trailing query separator.
    pub url: String,
}

impl WsTarget {
    /// Parses and resolves a `ws://` URL.
    pub async fn resolve(url: &str) -> Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("bad --ws-url {url}"))?;
        if uri.scheme_str() != Some("ws") {
            bail!("--ws-url must start with ws:// (TLS is not supported): {url}");
        }
        let addr = resolve_authority(&uri, 80).await?;
        Ok(Self {
            addr,
            url: url.trim_end_matches(['?', '&']).to_string(),
        })
    }

    /// The URL a client of `app`/`user` connects to.
    pub fn client_url(&self, app: &str, user: &str) -> String {
        self.resume_url(app, user, None)
    }

    /// The URL a client of `app`/`user` connects to, resuming from `since` (a cursor,
    /// URL-encoded here) when given.
    pub fn resume_url(&self, app: &str, user: &str, since: Option<&str>) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("app", app).append_pair("user", user);
        if let Some(since) = since {
            query.append_pair("since", since);
        }
        let query = query.finish();
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}{query}", self.url)
    }
}

/// The HTTP API endpoint, e.g. `http://127.0.0.1:8082`.
#[derive(Clone, Debug)]
pub struct ApiTarget {
    /// Resolved IPv4 address of the listener.
    pub addr: SocketAddr,
    /// `host:port` for the Host header.
    pub authority: String,
    /// Path prefix without trailing slash (usually empty).
    pub base_path: String,
}

impl ApiTarget {
    /// Parses and resolves an `http://` URL.
    pub async fn resolve(url: &str) -> Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("bad --api-url {url}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("--api-url must start with http://: {url}");
        }
        let addr = resolve_authority(&uri, 80).await?;
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .context("--api-url without host")?;
        Ok(Self {
            addr,
            authority,
            base_path: uri.path().trim_end_matches('/').to_string(),
        })
    }

    /// Resolves a comma-separated list of `http://` URLs: servers that share nothing (relays
    /// side by side), each of which gets every message.
    pub async fn resolve_all(urls: &str) -> Result<Vec<Self>> {
        let mut targets = Vec::new();
        for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            targets.push(Self::resolve(url).await?);
        }
        if targets.is_empty() {
            bail!("no --api-url given");
        }
        Ok(targets)
    }

    /// Full request path for an API route such as `/v1/push`.
    pub fn path(&self, route: &str) -> String {
        format!("{}{route}", self.base_path)
    }
}

/// Resolves the URI's host to an IPv4 address (clients bind 127.0.0.x sources).
async fn resolve_authority(uri: &Uri, default_port: u16) -> Result<SocketAddr> {
    let host = uri.host().context("URL without host")?;
    let port = uri.port_u16().unwrap_or(default_port);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolving {host}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .with_context(|| format!("{host} resolves to nothing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ws_url_gets_query() {
        let t = WsTarget::resolve("ws://127.0.0.1:8081/v1/ws")
            .await
            .unwrap();
        assert_eq!(t.addr, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(
            t.client_url("demo", "u 1"),
            "ws://127.0.0.1:8081/v1/ws?app=demo&user=u+1"
        );
        let t = WsTarget::resolve("ws://127.0.0.1:1/v1/ws?token=x")
            .await
            .unwrap();
        assert!(t.client_url("a", "b").ends_with("?token=x&app=a&user=b"));
    }

    #[tokio::test]
    async fn since_is_url_encoded() {
        let t = WsTarget::resolve("ws://127.0.0.1:8081/v1/ws")
            .await
            .unwrap();
        let url = t.resume_url("demo", "u1", Some("demo:all@k0x:7,demo:user:u1@:0"));
        assert_eq!(
            url,
            "ws://127.0.0.1:8081/v1/ws?app=demo&user=u1&since=demo%3Aall%40k0x%3A7%2Cdemo%3Auser%3Au1%40%3A0"
        );
        let back: Vec<(String, String)> =
            form_urlencoded::parse(url.split_once('?').unwrap().1.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(back[2].1, "demo:all@k0x:7,demo:user:u1@:0");
    }

    #[tokio::test]
    async fn api_url_parts() {
        let t = ApiTarget::resolve("http://localhost:8082/").await.unwrap();
        assert!(t.addr.is_ipv4());
        assert_eq!(t.authority, "localhost:8082");
        assert_eq!(t.path("/v1/push"), "/v1/push");
        assert!(ApiTarget::resolve("https://x:1").await.is_err());
    }
}
