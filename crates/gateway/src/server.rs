//! The HTTP server loop. `axum::serve` has no timer, so hyper never times out a client
//! that trickles its headers (slowloris) and its accept loop cannot be told to keep
//! serving while readiness drains; this is the same loop with those two added.

use std::{net::SocketAddr, time::Duration};

use axum::{Router, extract::ConnectInfo};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto::Builder, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use rookery_kit::ops::Readiness;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How the loop treats connections and shutdown.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// Time a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// After the shutdown signal, time spent serving on while readiness reports draining.
    pub drain_delay: Duration,
    /// Time in-flight requests get to finish once the listener is closed.
    pub drain_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown`: then readiness flips at once, requests
/// are still served for `drain_delay` (load balancers notice meanwhile), the listener
/// closes, and in-flight requests finish (for at most `drain_timeout`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    readiness: Readiness,
    shutdown: CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        // HTTP/2 WebSockets (RFC 8441) need CONNECT.
        .enable_connect_protocol()
        .keep_alive_interval(Duration::from_secs(20));
    let graceful = GracefulShutdown::new();
    let stop_accepting = CancellationToken::new();
    {
        let stop_accepting = stop_accepting.clone();
        let delay = options.drain_delay;
        tokio::spawn(async move {
            shutdown.cancelled().await;
            readiness.drain();
            tokio::time::sleep(delay).await;
            stop_accepting.cancel();
        });
    }
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = stop_accepting.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = tower::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            // What `into_make_service_with_connect_info` would add: rate limits by address.
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            app.clone().oneshot(req)
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(options.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain timeout, closing them");
    }
}

/// A failed accept is either one connection's problem (it went away before we took it)
/// or the process's (out of file descriptors): then wait a little for some to close
/// rather than spin.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "accept failed, pausing");
    metrics::counter!("gateway_accept_errors_total").increment(1);
    tokio::time::sleep(Duration::from_millis(50)).await;
}
