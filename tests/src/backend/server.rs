//! The HTTP server: an accept loop on a fixed address, one task per connection, faults applied before
//! the API, every request logged. Stopping drops the listener and every open connection at once, as an
//! outage would.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{header, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::api::{self, ApiRequest};
use super::faults::{FaultAction, FaultRequest};
use super::record::{RequestRecord, CONNECTION_CLOSED};
use super::reply::Reply;
use super::Shared;

/// Request bodies above this are refused (the real backend has a limit too; 64 MiB is far above any
/// bot's batch).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// A running server; dropping it does not stop it, [`Server::stop`] does.
pub(crate) struct Server {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Server {
    /// Binds `addr` (port 0 picks one) with SO_REUSEADDR, so a restart can take the same port again.
    pub(crate) async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(1024)
    }

    /// Serves `listener` on the current tokio runtime.
    pub(crate) fn spawn(listener: TcpListener, shared: Arc<Shared>) -> Server {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let accept_cancel = cancel.clone();
        let accept_tracker = tracker.clone();
        tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = accept_cancel.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                match accepted {
                    Ok((stream, _peer)) => {
                        let _ = stream.set_nodelay(true);
                        accept_tracker.spawn(serve_connection(
                            stream,
                            shared.clone(),
                            accept_cancel.clone(),
                        ));
                    }
                    Err(error) => {
                        // Typically EMFILE under a load test: back off a little instead of spinning.
                        warn!(%error, "test backend: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            }
        });
        tracker.close();
        Server { cancel, tracker }
    }

    /// Closes the listener and every connection, and waits until they are gone.
    pub(crate) async fn stop(self) {
        self.cancel.cancel();
        self.tracker.wait().await;
    }

    /// Stops without waiting (from `Drop`).
    pub(crate) fn abort(&self) {
        self.cancel.cancel();
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    server_cancel: CancellationToken,
) {
    // A fault can ask for this connection to be dropped without an answer.
    let close_now = CancellationToken::new();
    let service_close = close_now.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let shared = shared.clone();
        let close_now = service_close.clone();
        async move { Ok::<_, Infallible>(serve_request(shared, request, close_now).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                debug!(%error, "test backend: connection ended with an error");
            }
        }
        _ = close_now.cancelled() => debug!("test backend: connection closed by a fault"),
        _ = server_cancel.cancelled() => {}
    }
}

async fn serve_request(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    close_now: CancellationToken,
) -> Response<Body> {
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let had_token = query.iter().any(|(k, _)| k == "b");
    let logged_query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query.iter().filter(|(k, _)| k != "b"))
        .finish();
    let authorization_present = request.headers().contains_key(header::AUTHORIZATION);
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    let mut record = RequestRecord {
        method: method.clone(),
        path: path.clone(),
        query: logged_query,
        status: CONNECTION_CLOSED,
        had_authorization: authorization_present,
        had_token,
        bot: None,
        at: SystemTime::now(),
    };

    let body = match axum::body::to_bytes(Body::new(request.into_body()), BODY_LIMIT).await {
        Ok(body) => body,
        Err(error) => {
            debug!(%error, "test backend: could not read a request body");
            shared.record(record);
            close_now.cancel();
            std::future::pending::<()>().await;
            return Reply::internal_error().into_response();
        }
    };
    let fault = shared.lock_faults().apply(&FaultRequest {
        method: &method,
        path: &path,
        body: &body,
    });
    let mut action = FaultAction::Normal;
    if let Some((delay, fault_action)) = fault {
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        action = fault_action;
    }

    let reply = match action {
        FaultAction::CloseConnection => {
            debug!(%method, %path, "test backend: closing the connection (fault)");
            shared.record(record);
            close_now.cancel();
            // The connection task drops this future together with the connection.
            std::future::pending::<()>().await;
            return Reply::internal_error().into_response();
        }
        FaultAction::Respond {
            status,
            content_type,
            body,
        } => Reply {
            status,
            content_type,
            body,
        },
        FaultAction::Normal => {
            let handled = api::handle(
                &shared,
                &ApiRequest {
                    method: &method,
                    path: &path,
                    query: &query,
                    authorization_present,
                    content_type: content_type.as_deref(),
                    body: &body,
                },
            );
            record.bot = handled.bot;
            handled.reply
        }
    };
    record.status = reply.status;
    debug!(%method, %path, status = reply.status, "test backend: request");
    shared.record(record);
    reply.into_response()
}
