//! The in-process Grafolean test backend: serves a [`Fixture`] over real HTTP on loopback, enforces
//! what the real backend enforces, records every request and stored value, and injects failures.

mod api;
mod auth;
mod entities;
mod faults;
mod python;
mod record;
mod reply;
mod server;
mod values;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

pub use faults::{Fault, FaultId, FaultRequest};
pub use record::{RequestRecord, CONNECTION_CLOSED};
pub use values::{StoredValue, WriteMethod};

use crate::fixture::{Fixture, Id};
use faults::FaultTable;
use server::Server;
use values::ValueStore;

/// State shared by the server tasks and the test.
pub(crate) struct Shared {
    fixture: Mutex<Fixture>,
    values: Mutex<ValueStore>,
    requests: Mutex<Vec<RequestRecord>>,
    faults: Mutex<FaultTable>,
    /// Woken after every request, so waiting helpers re-check their condition.
    changed: Notify,
}

/// Locks a mutex even if a panicking test thread poisoned it: the data stays usable for the report.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(crate) fn lock_fixture(&self) -> MutexGuard<'_, Fixture> {
        lock(&self.fixture)
    }

    pub(crate) fn lock_values(&self) -> MutexGuard<'_, ValueStore> {
        lock(&self.values)
    }

    pub(crate) fn lock_faults(&self) -> MutexGuard<'_, FaultTable> {
        lock(&self.faults)
    }

    pub(crate) fn record(&self, record: RequestRecord) {
        lock(&self.requests).push(record);
        self.changed.notify_waiters();
    }
}

/// A Grafolean backend for tests, listening on `127.0.0.1` on the current tokio runtime.
///
/// ```no_run
/// # async fn example() {
/// use e2e::{Bot, Fixture, TestBackend};
/// let mut fixture = Fixture::new();
/// fixture
///     .account(1409012345, "Acme")
///     .bot(Bot::systemwide(1620000012, "ping"))
///     .credential(1409012345, 731002103, "ping", e2e::default_credential_details("ping"))
///     .sensor(1409012345, 842003211, "ping", Some(60), serde_json::json!({}))
///     .device(1409012345, 1348300224, "core-router", "127.0.0.1")
///     .bind(1348300224, "ping", 731002103, &[(842003211, Some(1))], 1620000012);
/// let backend = TestBackend::start(fixture).await;
/// // BACKEND_URL = backend.url(), BOT_TOKEN = backend.token(1620000012)
/// # }
/// ```
pub struct TestBackend {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: tokio::sync::Mutex<Option<Server>>,
}

impl TestBackend {
    /// Starts serving `fixture` on `127.0.0.1` with a free port. Panics if loopback cannot be bound.
    pub async fn start(fixture: Fixture) -> TestBackend {
        match TestBackend::bind(
            "127.0.0.1:0".parse().expect("a valid literal address"),
            fixture,
        )
        .await
        {
            Ok(backend) => backend,
            Err(error) => panic!("test backend: cannot listen on 127.0.0.1: {error}"),
        }
    }

    /// Starts serving `fixture` on `addr` (for the `test-backend` binary).
    pub async fn bind(addr: SocketAddr, fixture: Fixture) -> std::io::Result<TestBackend> {
        let listener = Server::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            fixture: Mutex::new(fixture),
            values: Mutex::new(ValueStore::default()),
            requests: Mutex::new(Vec::new()),
            faults: Mutex::new(FaultTable::default()),
            changed: Notify::new(),
        });
        let server = Server::spawn(listener, shared.clone());
        tracing::debug!(%addr, "test backend listening");
        Ok(TestBackend {
            shared,
            addr,
            server: tokio::sync::Mutex::new(Some(server)),
        })
    }

    /// The value for `BACKEND_URL`: `http://127.0.0.1:PORT/api`.
    pub fn url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// The socket address the backend listens on (kept across [`stop`](Self::stop) and
    /// [`restart`](Self::restart)).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token of a bot of the fixture (for `BOT_TOKEN`). Panics if there is no such bot.
    pub fn token(&self, bot: Id) -> String {
        match self.shared.lock_fixture().bots.get(&bot) {
            Some(bot) => bot.token.clone(),
            None => panic!("test backend: the fixture has no bot {bot}"),
        }
    }

    /// Changes the fixture while the backend runs (intervals, entities, permissions, status...);
    /// the next request sees the change.
    pub fn update<R>(&self, change: impl FnOnce(&mut Fixture) -> R) -> R {
        let result = change(&mut self.shared.lock_fixture());
        self.shared.changed.notify_waiters();
        result
    }

    /// A copy of the current fixture, including what bots created or changed through the API.
    pub fn fixture(&self) -> Fixture {
        self.shared.lock_fixture().clone()
    }

    /// The values stored for `account`, in the order they were first stored (a PUT overwriting an
    /// existing (path, t) replaces it in place).
    pub fn values(&self, account: Id) -> Vec<StoredValue> {
        self.shared.lock_values().values(account)
    }

    /// The values of `account` whose path is exactly `path`.
    pub fn values_at(&self, account: Id, path: &str) -> Vec<StoredValue> {
        self.values(account)
            .into_iter()
            .filter(|v| v.path == path)
            .collect()
    }

    /// How many values are stored over all accounts.
    pub fn value_count(&self) -> usize {
        self.shared.lock_values().total()
    }

    /// Forgets every stored value.
    pub fn clear_values(&self) {
        self.shared.lock_values().clear();
    }

    /// Waits until `condition` holds for the values of `account` and returns them; panics after
    /// `timeout` with the values and the last requests, so a failing test says what did arrive.
    pub async fn wait_for_values(
        &self,
        account: Id,
        condition: impl Fn(&[StoredValue]) -> bool,
        timeout: Duration,
    ) -> Vec<StoredValue> {
        let found = self
            .wait_until(
                |backend| {
                    let values = backend.values(account);
                    condition(&values).then_some(values)
                },
                timeout,
            )
            .await;
        match found {
            Some(values) => values,
            None => panic!(
                "test backend: timed out after {timeout:?} waiting for values of account {account}; stored: {:?}; last requests: {:?}",
                self.values(account),
                self.last_requests(20)
            ),
        }
    }

    /// Waits until `probe` returns Some (checked after every request and every `update`), or
    /// returns None after `timeout`.
    pub async fn wait_until<T>(
        &self,
        probe: impl Fn(&TestBackend) -> Option<T>,
        timeout: Duration,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(found) = probe(self) {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return probe(self);
            }
        }
    }

    /// Waits until at least `count` requests match `method` and `path_prefix`; panics after `timeout`.
    pub async fn wait_for_requests(
        &self,
        method: &str,
        path_prefix: &str,
        count: usize,
        timeout: Duration,
    ) {
        let reached = self
            .wait_until(
                |b| (b.count(method, path_prefix) >= count).then_some(()),
                timeout,
            )
            .await;
        if reached.is_none() {
            panic!(
                "test backend: timed out after {timeout:?} waiting for {count} x {method} {path_prefix}; got {}; last requests: {:?}",
                self.count(method, path_prefix),
                self.last_requests(20)
            );
        }
    }

    /// Every request received so far, oldest first, without tokens.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.requests).clone()
    }

    /// The number of requests received so far; pass it to [`requests_since`](Self::requests_since) to
    /// look at one phase of a test (e.g. one refresh).
    pub fn request_mark(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// The requests received after `mark` (see [`request_mark`](Self::request_mark)).
    pub fn requests_since(&self, mark: usize) -> Vec<RequestRecord> {
        lock(&self.shared.requests)
            .iter()
            .skip(mark)
            .cloned()
            .collect()
    }

    /// The last `n` requests.
    pub fn last_requests(&self, n: usize) -> Vec<RequestRecord> {
        let requests = lock(&self.shared.requests);
        requests[requests.len().saturating_sub(n)..].to_vec()
    }

    /// How many requests had this method and a path starting with `path_prefix`.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.is(method, path_prefix))
            .count()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Panics (listing them) if any request carried an `Authorization` header.
    pub fn assert_no_authorization_header(&self) {
        let offending: Vec<RequestRecord> = lock(&self.shared.requests)
            .iter()
            .filter(|r| r.had_authorization)
            .cloned()
            .collect();
        assert!(
            offending.is_empty(),
            "requests with an Authorization header: {offending:?}"
        );
    }

    /// Installs a failure injection rule (first matching rule wins) and returns its handle.
    pub fn inject(&self, fault: Fault) -> FaultId {
        self.shared.lock_faults().add(fault)
    }

    /// Removes one fault.
    pub fn remove_fault(&self, id: FaultId) {
        self.shared.lock_faults().remove(id);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared.lock_faults().clear();
    }

    /// How many requests a fault has affected so far.
    pub fn fault_hits(&self, id: FaultId) -> usize {
        self.shared.lock_faults().hits(id)
    }

    /// Simulates a dead server: closes the listener and every open connection. The fixture, values,
    /// request log and faults are kept. No-op if already stopped.
    pub async fn stop(&self) {
        let server = self.server.lock().await.take();
        if let Some(server) = server {
            server.stop().await;
            tracing::debug!(addr = %self.addr, "test backend stopped");
        }
    }

    /// Serves again on the same address after [`stop`](Self::stop). No-op if running.
    pub async fn restart(&self) -> std::io::Result<()> {
        let mut server = self.server.lock().await;
        if server.is_none() {
            let listener = Server::bind(self.addr).await?;
            *server = Some(Server::spawn(listener, self.shared.clone()));
            tracing::debug!(addr = %self.addr, "test backend restarted");
        }
        Ok(())
    }

    /// Whether the server currently accepts connections.
    pub async fn is_running(&self) -> bool {
        self.server.lock().await.is_some()
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        if let Ok(server) = self.server.try_lock() {
            if let Some(server) = server.as_ref() {
                server.abort();
            }
        }
    }
}
