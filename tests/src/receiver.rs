//! An HTTP receiver for notifications in tests: it records every request (method, path with
//! query, body) on loopback, and can answer 503 on chosen paths to play a sink that is down.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the receiver got.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub method: String,
    /// Path and query, e.g. `/v1/write/keyevent?token=t`.
    pub target: String,
    pub body: String,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    down: Mutex<HashSet<String>>,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

async fn record(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> StatusCode {
    let path = uri.path().to_string();
    if shared
        .down
        .lock()
        .map(|d| d.contains(&path))
        .unwrap_or(false)
    {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let target = uri.path_and_query().map(|p| p.to_string()).unwrap_or(path);
    if let Ok(mut received) = shared.received.lock() {
        received.push(Received {
            method: method.to_string(),
            target,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    StatusCode::OK
}

impl Receiver {
    /// Starts on a free loopback port.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new()
            .fallback(record)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, shared, task }
    }

    /// Answers 503 on `path` (true) or records again (false).
    pub fn set_down(&self, path: &str, down: bool) {
        if let Ok(mut set) = self.shared.down.lock() {
            if down {
                set.insert(path.to_string());
            } else {
                set.remove(path);
            }
        }
    }

    /// Requests recorded so far whose path (without query) is `path`.
    pub fn received(&self, path: &str) -> Vec<Received> {
        let all = self
            .shared
            .received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        all.into_iter()
            .filter(|r| r.target.split('?').next() == Some(path))
            .collect()
    }

    /// Waits until `probe` holds for the requests to `path`; panics after `timeout`.
    pub async fn wait_for(
        &self,
        path: &str,
        what: &str,
        probe: impl Fn(&[Received]) -> bool,
        timeout: Duration,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.received(path);
            if probe(&got) {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what} on {path}; got:\n{got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
