//! The relay's WebSocket listener: `GET /v1/ws?app=APP&user=USER`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{StatusCode, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::relay::frame;
use crate::relay::hub::Hub;

/// Accepts connections forever; each one runs in its own task.
pub async fn serve(
    listener: TcpListener,
    hub: Arc<Hub>,
    config: WebSocketConfig,
) -> anyhow::Result<()> {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle(stream, hub.clone(), config));
            }
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                eprintln!("relay: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// `app` and `user` from the request target, or the HTTP error to answer with.
pub fn parse_target(uri: &Uri) -> Result<(String, String), (StatusCode, &'static str)> {
    if uri.path() != "/v1/ws" {
        return Err((StatusCode::NOT_FOUND, "not found"));
    }
    let mut app = None;
    let mut user = None;
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "app" => app = Some(v.into_owned()),
            "user" => user = Some(v.into_owned()),
            _ => {}
        }
    }
    match (app, user) {
        (Some(a), Some(u)) if !a.is_empty() && !u.is_empty() => Ok((a, u)),
        _ => Err((StatusCode::BAD_REQUEST, "app and user are required")),
    }
}

/// Handshake, welcome, then forward queued frames until either side ends.
async fn handle(stream: TcpStream, hub: Arc<Hub>, config: WebSocketConfig) {
    let _ = stream.set_nodelay(true);
    let mut target = None;
    // The callback's signature is fixed by tungstenite.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| match parse_target(req.uri()) {
        Ok(t) => {
            target = Some(t);
            Ok(resp)
        }
        Err((status, why)) => {
            let mut err = ErrorResponse::new(Some(why.to_string()));
            *err.status_mut() = status;
            Err(err)
        }
    };
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await
    else {
        return;
    };
    let Some((app, user)) = target else {
        return;
    };
    let Ok(mut reg) = hub.register(&app, &user) else {
        return;
    };
    let welcome = Message::Text(frame::welcome(reg.id, &app, &user));
    if ws.send(welcome).await.is_ok() {
        loop {
            tokio::select! {
                queued = reg.rx.recv() => match queued {
                    Some(msg) => if ws.send(msg).await.is_err() { break },
                    // The hub dropped us (queue overflow).
                    None => break,
                },
                incoming = ws.next() => match incoming {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    hub.unregister(&app, reg.id);
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_parsing() {
        let ok: Uri = "/v1/ws?app=demo&user=u%201".parse().unwrap();
        assert_eq!(
            parse_target(&ok).unwrap(),
            ("demo".to_string(), "u 1".to_string())
        );
        let missing: Uri = "/v1/ws?app=demo".parse().unwrap();
        assert_eq!(
            parse_target(&missing).unwrap_err().0,
            StatusCode::BAD_REQUEST
        );
        let wrong: Uri = "/ws?app=a&user=b".parse().unwrap();
        assert_eq!(parse_target(&wrong).unwrap_err().0, StatusCode::NOT_FOUND);
    }
}
