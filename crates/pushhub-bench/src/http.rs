//! A single keep-alive HTTP/1.1 connection.
//!
//! The publisher deliberately uses exactly one connection so that the publish
//! side costs the server the same on every run, and the suite uses the same
//! code for its readiness probe.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One HTTP/1.1 client connection.
pub struct HttpConn {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
}

impl HttpConn {
    /// Opens a TCP connection to `addr` and performs the HTTP/1 handshake.
    pub async fn connect(addr: SocketAddr, authority: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(async move {
            // The connection ends when the sender is dropped or the peer closes.
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            authority: authority.to_string(),
        })
    }

    /// True once the server has closed the connection (after an answer that said
    /// `Connection: close`): a request sent on it would fail unsent.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Opens a connection to the server at `api_url` (`http://HOST:PORT`).
    pub async fn to_url(api_url: &str) -> Result<Self> {
        let authority = api_url
            .strip_prefix("http://")
            .context("API URL is not http://")?;
        Self::connect(authority.parse()?, authority).await
    }

    /// Sends one request and reads the whole response body.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        bearer: Option<&str>,
    ) -> Result<(StatusCode, Bytes)> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority);
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = bearer {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req.body(Full::new(body.unwrap_or_default()))?;
        self.sender.ready().await.context("connection not ready")?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .context("sending request")?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .context("reading body")?
            .to_bytes();
        Ok((status, body))
    }
}

/// `GET path` on a fresh connection; returns the status (used as a readiness probe).
pub async fn get_status(addr: SocketAddr, authority: &str, path: &str) -> Result<StatusCode> {
    let mut conn = HttpConn::connect(addr, authority).await?;
    let (status, _) = conn.request(Method::GET, path, None, None).await?;
    Ok(status)
}
