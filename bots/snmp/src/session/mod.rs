//! SNMP sessions: credential details and `details.ipv4` turned into async-snmp clients that all
//! share one UDP socket, with a bound on requests in flight and errors a user can act on.
//!
//! `credential` reads credentials, `target` addresses, `error` names what went wrong and
//! `des_salt` keeps the DES salt state across restarts.

mod credential;
mod des_salt;
mod error;
mod target;

pub use credential::{CommunityVersion, Credential, UsmCredential};
pub use des_salt::des_salt_state;
pub use error::SnmpError;
pub use target::{format_target, parse_target, DEFAULT_PORT};

use async_snmp::{
    Client, DesSaltState, EngineCache, ErrorKind, ErrorStatus, Retry, UdpClient, UdpTransport,
};
use error::explain_report;
use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Bot-wide SNMP settings (command-line flags and env vars of the bot).
#[derive(Debug, Clone, PartialEq)]
pub struct SnmpSettings {
    /// How long to wait for one answer before retrying (the original: 1 s).
    pub timeout: Duration,
    /// Retries after a timeout (the original: 3).
    pub retries: u32,
    /// Requests in flight at once over all agents.
    pub max_in_flight: usize,
    /// Devices polled (or synced) at once: bounds the memory of walks in progress.
    pub max_devices: usize,
    /// GETBULK max-repetitions during walks.
    pub max_repetitions: u32,
    /// Variable bindings one request asks for at most (a merged GET's OIDs, a GETBULK's
    /// columns times repetitions). Lowered per agent when its answers come back truncated
    /// or `tooBig`.
    pub max_varbinds: usize,
    /// Variable bindings of one row-chain GETNEXT at most: the GETNEXTs that check a walked
    /// column's rows against the rows of its table's first column, many links a request
    /// (`merged.rs`). Lowered per agent when it says `tooBig`. 0 turns row chains off.
    pub max_chain_varbinds: usize,
    /// A walk returning more rows than this fails (a broken agent must not fill memory).
    pub max_walk_rows: usize,
}

impl Default for SnmpSettings {
    fn default() -> Self {
        SnmpSettings {
            timeout: Duration::from_secs(1),
            retries: 3,
            max_in_flight: 512,
            max_devices: 1000,
            max_repetitions: 25,
            max_varbinds: 64,
            max_chain_varbinds: 256,
            max_walk_rows: 100_000,
        }
    }
}
/// Counters of the SNMP layer, registered with the framework's metrics by the bot.
#[derive(Clone, Default)]
pub struct SnmpCounters {
    /// Requests sent (each GET, GETNEXT or GETBULK, retries not counted).
    pub requests: Counter,
    /// Requests that got no answer after all retries.
    pub timeouts: Counter,
    /// Requests that failed otherwise (error status, authentication, malformed answers).
    pub errors: Counter,
}

/// The shared SNMP machinery of the bot: one UDP socket, the v3 engine cache and DES salt
/// state, the bound on requests in flight, and cached clients per agent and credential.
pub struct SnmpEngine {
    transport: UdpTransport,
    engine_cache: Arc<EngineCache>,
    des_salt: Option<DesSaltState>,
    in_flight: Semaphore,
    devices: Semaphore,
    settings: SnmpSettings,
    counters: SnmpCounters,
    sessions: Mutex<HashMap<SessionKey, CachedSession>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct SessionKey {
    address: String,
    credential: Credential,
}

struct CachedSession {
    session: Arc<Session>,
    last_used: Instant,
}

/// Sessions unused this long are dropped (their entity was removed or changed credential).
const SESSION_IDLE_LIMIT: Duration = Duration::from_secs(3600);

/// Receive capacity advertised to v3 agents (net-snmp answers large bulk requests with genErr
/// when it thinks our datagrams may not exceed 1472 bytes), and the largest request we send.
const RECEIVE_CAPACITY: usize = 65_507;
/// Socket receive buffer: room for bursts of answers from many agents at once.
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

impl SnmpEngine {
    /// Binds the shared socket (dual-stack if the host has IPv6, else IPv4).
    pub async fn new(
        settings: SnmpSettings,
        des_salt: Option<DesSaltState>,
        counters: SnmpCounters,
    ) -> Result<SnmpEngine, String> {
        Retry::fixed(settings.retries, Duration::ZERO)
            .map_err(|e| format!("invalid SNMP retries {}: {e}", settings.retries))?;
        if settings.timeout.is_zero() {
            return Err("SNMP timeout must be above zero".to_string());
        }
        if settings.max_in_flight == 0 || settings.max_devices == 0 || settings.max_varbinds == 0 {
            return Err(
                "SNMP max in flight, max devices and max varbinds must be at least 1".to_string(),
            );
        }
        let bind = |address: &'static str| {
            UdpTransport::builder()
                .bind(address)
                .receive_capacity(RECEIVE_CAPACITY)
                // async-snmp's default (1472) would split every row-chain request above one
                // Ethernet frame; an agent that cannot take one says so with a timeout, which
                // the chains learn from.
                .send_capacity(RECEIVE_CAPACITY)
                .recv_buffer_size(SOCKET_BUFFER)
                .send_buffer_size(SOCKET_BUFFER)
                .warn_on_source_mismatch(false)
                .build()
        };
        let transport = match bind("[::]:0").await {
            Ok(transport) => transport,
            Err(v6_error) => bind("0.0.0.0:0").await.map_err(|e| {
                format!("cannot bind the SNMP socket: {e} (IPv6 attempt: {v6_error})")
            })?,
        };
        Ok(SnmpEngine {
            transport,
            engine_cache: Arc::new(EngineCache::new()),
            des_salt,
            in_flight: Semaphore::new(settings.max_in_flight),
            devices: Semaphore::new(settings.max_devices),
            settings,
            counters,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// The settings the engine was built with.
    pub fn settings(&self) -> &SnmpSettings {
        &self.settings
    }

    /// Waits for one of the `max_devices` slots; hold it while working on one device.
    pub async fn device_slot(&self) -> SemaphorePermit<'_> {
        // The semaphore is never closed, so acquiring cannot fail.
        self.devices
            .acquire()
            .await
            .unwrap_or_else(|_| unreachable!("the device semaphore is never closed"))
    }

    /// The counters of requests, timeouts and errors.
    pub fn counters(&self) -> &SnmpCounters {
        &self.counters
    }

    /// A session for `address` (`details.ipv4`) with `credential`, reused while both stay the same.
    pub async fn session(
        self: &Arc<Self>,
        address: &str,
        credential: &Credential,
    ) -> Result<Arc<Session>, SnmpError> {
        let key = SessionKey {
            address: address.to_string(),
            credential: credential.clone(),
        };
        if let Some(cached) = self.lock_sessions().get_mut(&key) {
            cached.last_used = Instant::now();
            return Ok(cached.session.clone());
        }
        let session = Arc::new(self.build_session(address, credential).await?);
        let mut sessions = self.lock_sessions();
        let now = Instant::now();
        sessions.retain(|_, cached| now.duration_since(cached.last_used) < SESSION_IDLE_LIMIT);
        let cached = sessions.entry(key).or_insert(CachedSession {
            session,
            last_used: now,
        });
        Ok(cached.session.clone())
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, CachedSession>> {
        // A panic while holding this lock cannot leave the map inconsistent; keep using it.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn build_session(
        self: &Arc<Self>,
        address: &str,
        credential: &Credential,
    ) -> Result<Session, SnmpError> {
        let (host, port) = parse_target(address).map_err(SnmpError::Config)?;
        let target = format_target(&host, port);
        let auth = credential
            .auth()
            .map_err(|e| SnmpError::Config(format!("{target}: {e}")))?;
        let retry = Retry::fixed(self.settings.retries, Duration::ZERO)
            .map_err(|e| SnmpError::Config(e.to_string()))?;
        let mut builder = Client::builder((host.as_str(), port), auth)
            .request_timeout(self.settings.timeout)
            .retry(retry)
            .max_oids_per_request(
                self.settings
                    .max_varbinds
                    .max(self.settings.max_chain_varbinds),
            )
            .engine_cache(self.engine_cache.clone());
        if credential.uses_des() {
            let state = self.des_salt.clone().ok_or_else(|| {
                SnmpError::Config(format!(
                    "{target}: DES privacy needs the persisted DES salt state, which is unavailable"
                ))
            })?;
            builder = builder.des_salt_state(state);
        }
        let client = builder
            .build_with(&self.transport)
            .await
            .map_err(|e| SnmpError::Config(format!("{target}: {e}")))?;
        Ok(Session {
            engine: self.clone(),
            client,
            target,
            credential: credential.clone(),
            answered: AtomicBool::new(false),
            bulk_varbinds: AtomicUsize::new(self.settings.max_varbinds),
            chain_size: ChainSize::new(self.settings.max_chain_varbinds),
        })
    }
}
/// One agent with one credential: what `get` and `walk` run on.
pub struct Session {
    engine: Arc<SnmpEngine>,
    client: UdpClient,
    target: String,
    credential: Credential,
    /// Set once the agent answered any request of this session.
    answered: AtomicBool,
    /// Variable bindings a GETBULK answer of this agent holds at most: starts at
    /// `max_varbinds`, lowered when the agent truncates an answer or says `tooBig`.
    bulk_varbinds: AtomicUsize,
    /// Variable bindings of a row-chain GETNEXT to this agent.
    chain_size: ChainSize,
}

/// How many variable bindings a row-chain GETNEXT to one agent holds. It starts small enough
/// for the 484-byte message every agent must take and doubles after each request answered
/// whole and soon, up to `max_chain_varbinds`: an agent drops a request larger than it can
/// take, and each such request costs a timeout. A slow answer halves it; a `tooBig` answer or
/// a chain request that timed out lowers the ceiling for good.
pub(crate) struct ChainSize {
    current: AtomicUsize,
    ceiling: AtomicUsize,
}

impl ChainSize {
    /// Sixteen GETNEXTs of table cells (about 20 bytes each) fit in 484 bytes.
    const START: usize = 16;

    fn new(ceiling: usize) -> ChainSize {
        ChainSize {
            current: AtomicUsize::new(Self::START.min(ceiling).max(1)),
            ceiling: AtomicUsize::new(ceiling.max(1)),
        }
    }

    /// The size of the next chain request.
    pub(crate) fn get(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// The most the size may grow to.
    pub(crate) fn ceiling(&self) -> usize {
        self.ceiling.load(Ordering::Relaxed)
    }

    /// A request of `size` was answered whole after `took`: the next may be twice as large,
    /// unless the answer took more than a quarter of `timeout`. An agent takes longer for
    /// larger requests, and one that is busy would soon miss the timeout: the next is then
    /// half as large (not below the start).
    pub(crate) fn answered(&self, size: usize, took: Duration, timeout: Duration) {
        let ceiling = self.ceiling.load(Ordering::Relaxed);
        if took > timeout / 4 {
            let halved = (size / 2).max(Self::START.min(ceiling));
            self.current.fetch_min(halved, Ordering::Relaxed);
            return;
        }
        self.current
            .fetch_max(size.saturating_mul(2).min(ceiling), Ordering::Relaxed);
    }

    /// The agent does not take requests above `limit` variable bindings.
    pub(crate) fn limit(&self, limit: usize) {
        let limit = limit.max(1);
        self.ceiling.fetch_min(limit, Ordering::Relaxed);
        self.current.fetch_min(limit, Ordering::Relaxed);
    }
}

impl Session {
    /// `host:port`, as named in log lines.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The credential this session uses.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// The async-snmp client.
    pub(crate) fn client(&self) -> &UdpClient {
        &self.client
    }

    /// The engine settings (walk limits, max-repetitions).
    pub fn settings(&self) -> &SnmpSettings {
        &self.engine.settings
    }

    /// The variable bindings a GETBULK answer may hold, as learnt from this agent.
    pub(crate) fn bulk_varbinds(&self) -> usize {
        self.bulk_varbinds.load(Ordering::Relaxed)
    }

    /// Lowers [`Session::bulk_varbinds`] to `limit` (at least 1): the agent's answers do not
    /// hold more.
    pub(crate) fn limit_bulk_varbinds(&self, limit: usize) {
        self.bulk_varbinds
            .fetch_min(limit.max(1), Ordering::Relaxed);
    }

    /// The size of row-chain GETNEXTs to this agent, as learnt from it.
    pub(crate) fn chain_size(&self) -> &ChainSize {
        &self.chain_size
    }

    /// Counts requests sent that [`Session::request`] did not see (split `tooBig` retries).
    pub(crate) fn count_requests(&self, requests: u64) {
        self.engine.counters.requests.inc_by(requests);
    }

    /// Waits for a free request slot; hold the permit while the request is in flight.
    async fn request_slot(&self) -> SemaphorePermit<'_> {
        self.engine.counters.requests.inc();
        // The semaphore is never closed, so acquiring cannot fail.
        self.engine
            .in_flight
            .acquire()
            .await
            .unwrap_or_else(|_| unreachable!("the in-flight semaphore is never closed"))
    }

    /// Whether this is a v3 session that never got an answer although the agent answered
    /// engine discovery. net-snmp answers a wrong password with unauthenticated reports
    /// (usmStatsWrongDigests, usmStatsDecryptionErrors) that async-snmp rightly ignores, so
    /// the request times out; this tells that case apart from an agent that is down.
    fn answered_discovery_only(&self) -> bool {
        matches!(self.credential, Credential::Usm(_))
            && !self.answered.load(Ordering::Relaxed)
            && self
                .engine
                .engine_cache
                .get(&self.client.peer_addr())
                .is_some()
    }

    /// Runs one request within the in-flight bound and notes whether the agent answered.
    pub(crate) async fn request<T>(
        &self,
        request: impl Future<Output = async_snmp::Result<T>>,
    ) -> async_snmp::Result<T> {
        self.request_noting(request, |result| result.as_ref().err().map(|e| &**e))
            .await
    }

    /// [`Session::request`] for requests whose outcome carries its error elsewhere:
    /// `error_of` finds it.
    pub(crate) async fn request_noting<R>(
        &self,
        request: impl Future<Output = R>,
        error_of: impl Fn(&R) -> Option<&async_snmp::Error>,
    ) -> R {
        let result = {
            let _slot = self.request_slot().await;
            request.await
        };
        let answered = match error_of(&result) {
            None => true,
            Some(error) => matches!(error.exchange_source(), async_snmp::Error::Snmp { .. }),
        };
        if answered {
            self.answered.store(true, Ordering::Relaxed);
        }
        result
    }

    /// Turns an async-snmp error into an [`SnmpError`] and counts it.
    pub(crate) fn classify(&self, error: &async_snmp::Error) -> SnmpError {
        let counters = &self.engine.counters;
        let target = self.target.clone();
        let user = match &self.credential {
            Credential::Usm(usm) => usm.security_name.clone(),
            Credential::Community { .. } => String::new(),
        };
        let source = error.exchange_source();
        let classified = match source {
            async_snmp::Error::Timeout { .. } if self.answered_discovery_only() => {
                SnmpError::Authentication {
                    target,
                    user,
                    reason:
                        "the agent answers SNMPv3 discovery but not our authenticated requests: \
                             wrong authentication password (snmpv3_authKey), privacy password \
                             (snmpv3_privKey) or protocol, or the agent does not know this user"
                            .to_string(),
                }
            }
            async_snmp::Error::Timeout { retries, .. } => {
                counters.timeouts.inc();
                return SnmpError::Timeout {
                    target,
                    retries: *retries,
                    timeout: self.engine.settings.timeout,
                };
            }
            async_snmp::Error::Report { status, .. } => SnmpError::Authentication {
                target,
                user,
                reason: explain_report(status),
            },
            async_snmp::Error::Auth { .. } => SnmpError::Authentication {
                target,
                user,
                reason: "the answer failed authentication: wrong snmpv3_authKey or snmpv3_privKey?"
                    .to_string(),
            },
            async_snmp::Error::Snmp {
                status: ErrorStatus::NoSuchName,
                ..
            } => SnmpError::NoSuchObject { target },
            async_snmp::Error::Snmp { status, .. } => SnmpError::Agent {
                target,
                status: status.to_string(),
            },
            async_snmp::Error::WalkAborted { reason, .. } => SnmpError::Walk {
                target,
                reason: reason.to_string(),
            },
            other if other.kind() == ErrorKind::Config => {
                SnmpError::Config(format!("{target}: {other}"))
            }
            other => SnmpError::Other {
                target,
                reason: other.to_string(),
            },
        };
        counters.errors.inc();
        classified
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_size_starts_small_doubles_and_keeps_what_the_agent_refused() {
        let timeout = Duration::from_secs(1);
        let soon = Duration::from_millis(10);
        let slow = Duration::from_millis(400);
        let size = ChainSize::new(256);
        assert_eq!(size.get(), 16);
        size.answered(16, soon, timeout);
        size.answered(32, soon, timeout);
        assert_eq!(size.get(), 64);
        size.answered(200, soon, timeout);
        assert_eq!(size.get(), 256);
        size.answered(256, slow, timeout);
        assert_eq!(
            (size.get(), size.ceiling()),
            (128, 256),
            "a slow answer halves it"
        );
        for slow_size in [128, 64, 32] {
            size.answered(slow_size, slow, timeout);
        }
        assert_eq!(size.get(), 16, "not below the start");
        size.limit(20);
        assert_eq!((size.get(), size.ceiling()), (16, 20));
        size.answered(16, soon, timeout);
        assert_eq!(size.get(), 20);
        size.answered(7, soon, timeout);
        assert_eq!(
            size.get(),
            20,
            "a short last request does not shrink the size"
        );
        assert_eq!(ChainSize::new(4).get(), 4);
    }

    #[tokio::test]
    async fn device_slots_are_bounded() {
        let settings = SnmpSettings {
            max_devices: 1,
            ..SnmpSettings::default()
        };
        let engine = SnmpEngine::new(settings, None, SnmpCounters::default())
            .await
            .unwrap();
        let first = engine.device_slot().await;
        let second = tokio::time::timeout(Duration::from_millis(50), engine.device_slot()).await;
        assert!(second.is_err(), "a second device must wait");
        drop(first);
        let third = tokio::time::timeout(Duration::from_millis(50), engine.device_slot()).await;
        assert!(third.is_ok());
    }
}
