//! Serving an axum router on 127.0.0.1:0, over plain HTTP or TLS, with one extra the
//! emulators need: a handler can ask for the connection to be dropped without a response
//! (the `reset` fault), which axum alone cannot express.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Response extension: drop the connection instead of answering.
#[derive(Debug, Clone, Copy)]
pub struct ResetConnection;

/// A response that makes the server close the connection without sending anything.
pub fn reset_response() -> Response {
    let mut r = Response::new(Body::empty());
    r.extensions_mut().insert(ResetConnection);
    r
}

#[derive(Debug, thiserror::Error)]
#[error("connection reset by fault injection")]
struct ConnectionReset;

/// A running emulator endpoint. Dropping it stops accepting new connections.
pub struct ServerHandle {
    addr: SocketAddr,
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Binds 127.0.0.1 on a free port and serves `router` until the handle is stopped or dropped.
pub async fn serve(
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<ServerHandle> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let is_tls = tls.is_some();
    let acceptor = tls.map(TlsAcceptor::from);
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = &mut stop_rx => break,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    tracing::debug!("accept failed: {e}");
                    continue;
                }
            };
            let router = router.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let router = router.clone();
                    async move {
                        let resp = match router.oneshot(req).await {
                            Ok(resp) => resp,
                            Err(never) => match never {},
                        };
                        if resp.extensions().get::<ResetConnection>().is_some() {
                            return Err(ConnectionReset);
                        }
                        Ok(resp)
                    }
                });
                let builder = Builder::new(TokioExecutor::new());
                let served = match acceptor {
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(tls_stream) => {
                            builder
                                .serve_connection(TokioIo::new(tls_stream), service)
                                .await
                        }
                        Err(e) => {
                            tracing::debug!("TLS handshake failed: {e}");
                            return;
                        }
                    },
                    None => {
                        builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                };
                if let Err(e) = served {
                    tracing::trace!("connection ended: {e}");
                }
            });
        }
    });
    Ok(ServerHandle {
        addr,
        tls: is_tls,
        stop: Some(stop_tx),
        task: Some(task),
    })
}

/// A rustls server config on the ring provider, chosen explicitly: the process also links
/// aws-lc-rs (AWS SDK), so relying on a process-wide default provider would be ambiguous.
pub fn tls_server_config(
    cert_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(cert_chain, key)?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn serves_and_resets_on_request() {
        let router = Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route("/reset", get(|| async { reset_response() }));
        let server = serve(router, None).await.expect("bind");
        let addr = server.addr();
        let ask = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .expect("write");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out).await;
            out
        };
        assert!(ask("/ok").await.contains("fine"));
        assert_eq!(ask("/reset").await, "", "reset must send nothing");
        server.stop().await;
    }
}
