//! SNMP sessions: credential details and `details.ipv4` turned into async-snmp clients that all
//! share one UDP socket, with a bound on requests in flight and errors a user can act on.

use async_snmp::v3::ReportStatus;
use async_snmp::{
    Auth, AuthProtocol, Client, DesSaltState, EngineCache, ErrorKind, ErrorStatus,
    PersistedDesSaltState, PrivProtocol, Retry, UdpClient, UdpTransport, UsmConfig,
};
use prometheus_client::metrics::counter::Counter;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

/// The agent port when `details.ipv4` carries none.
pub const DEFAULT_PORT: u16 = 161;

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
            max_walk_rows: 100_000,
        }
    }
}

/// SNMP version and security of one credential (contract §4.6). Secrets are kept for the
/// session only; `Debug` never shows them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Credential {
    /// `snmpv1` / `snmpv2c` with `snmpv12_community`.
    Community {
        version: CommunityVersion,
        community: String,
    },
    /// `snmpv3` with USM.
    Usm(UsmCredential),
}

/// SNMPv1 or SNMPv2c.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommunityVersion {
    V1,
    V2c,
}

/// The `snmpv3_*` fields of a credential.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UsmCredential {
    pub security_name: String,
    /// Authentication protocol and key; present for authNoPriv and authPriv.
    pub auth: Option<(AuthProtocol, String)>,
    /// Privacy protocol and key; present for authPriv.
    pub privacy: Option<(PrivProtocol, String)>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Community { version, .. } => f
                .debug_struct("Community")
                .field("version", version)
                .field("community", &"<redacted>")
                .finish(),
            Credential::Usm(usm) => usm.fmt(f),
        }
    }
}

impl fmt::Debug for UsmCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Usm")
            .field("security_name", &self.security_name)
            .field("auth", &self.auth.as_ref().map(|(p, _)| p))
            .field("privacy", &self.privacy.as_ref().map(|(p, _)| p))
            .finish()
    }
}

fn text_field<'a>(details: &'a Json, key: &str) -> Option<&'a str> {
    details
        .get(key)
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
}

impl Credential {
    /// Reads a credential's `details` (contract §4.6). Errors name the missing or bad field,
    /// never a secret.
    pub fn from_details(details: &Json) -> Result<Credential, String> {
        let version = text_field(details, "version")
            .ok_or("credential has no 'version' (snmpv1, snmpv2c or snmpv3)")?;
        match version.to_ascii_lowercase().as_str() {
            "snmpv1" | "snmpv2c" => {
                let community = details
                    .get("snmpv12_community")
                    .and_then(Json::as_str)
                    .ok_or("credential has no 'snmpv12_community'")?;
                Ok(Credential::Community {
                    version: if version.eq_ignore_ascii_case("snmpv1") {
                        CommunityVersion::V1
                    } else {
                        CommunityVersion::V2c
                    },
                    community: community.to_string(),
                })
            }
            "snmpv3" => Ok(Credential::Usm(UsmCredential::from_details(details)?)),
            _ => Err(format!(
                "credential version '{version}' is not snmpv1, snmpv2c or snmpv3"
            )),
        }
    }

    /// `snmpv1`, `snmpv2c` or `snmpv3 user 'name'`, for log lines.
    pub fn describe(&self) -> String {
        match self {
            Credential::Community {
                version: CommunityVersion::V1,
                ..
            } => "snmpv1".to_string(),
            Credential::Community {
                version: CommunityVersion::V2c,
                ..
            } => "snmpv2c".to_string(),
            Credential::Usm(usm) => format!("snmpv3 user '{}'", usm.security_name),
        }
    }

    /// Whether walks use GETNEXT (v1) rather than GETBULK.
    pub fn is_v1(&self) -> bool {
        matches!(
            self,
            Credential::Community {
                version: CommunityVersion::V1,
                ..
            }
        )
    }

    fn auth(&self) -> Result<Auth, String> {
        match self {
            Credential::Community {
                version: CommunityVersion::V1,
                community,
            } => Ok(Auth::v1(community.as_str())),
            Credential::Community {
                version: CommunityVersion::V2c,
                community,
            } => Ok(Auth::v2c(community.as_str())),
            Credential::Usm(usm) => {
                let config = UsmConfig::new(usm.security_name.clone());
                let problem = |e: async_snmp::CryptoError| {
                    format!("snmpv3 user '{}': {e}", usm.security_name)
                };
                let config = match (&usm.auth, &usm.privacy) {
                    (None, _) => config,
                    (Some((auth, auth_key)), None) => {
                        config.auth(*auth, auth_key).map_err(problem)?
                    }
                    (Some((auth, auth_key)), Some((privacy, priv_key))) => config
                        .auth_priv(*auth, auth_key, *privacy, priv_key)
                        .map_err(problem)?,
                };
                Ok(Auth::Usm(config))
            }
        }
    }

    fn uses_des(&self) -> bool {
        matches!(
            self,
            Credential::Usm(UsmCredential {
                privacy: Some((PrivProtocol::Des | PrivProtocol::Des3, _)),
                ..
            })
        )
    }
}

impl UsmCredential {
    fn from_details(details: &Json) -> Result<UsmCredential, String> {
        let security_name = text_field(details, "snmpv3_securityName")
            .ok_or("snmpv3 credential has no 'snmpv3_securityName'")?
            .to_string();
        let level = text_field(details, "snmpv3_securityLevel").unwrap_or("noAuthNoPriv");
        let (with_auth, with_privacy) = match level.to_ascii_lowercase().as_str() {
            "noauthnopriv" => (false, false),
            "authnopriv" => (true, false),
            "authpriv" => (true, true),
            _ => {
                return Err(format!(
                    "snmpv3_securityLevel '{level}' is not noAuthNoPriv, authNoPriv or authPriv"
                ))
            }
        };
        let auth = if with_auth {
            let protocol = text_field(details, "snmpv3_authProtocol").ok_or_else(|| {
                format!("{level} needs 'snmpv3_authProtocol' (MD5, SHA, SHA-256...)")
            })?;
            let protocol = protocol.parse::<AuthProtocol>().map_err(|_| {
                format!("snmpv3_authProtocol '{protocol}' is not MD5, SHA, SHA-224, SHA-256, SHA-384 or SHA-512")
            })?;
            let key = text_field(details, "snmpv3_authKey")
                .ok_or_else(|| format!("{level} needs 'snmpv3_authKey'"))?;
            Some((protocol, key.to_string()))
        } else {
            None
        };
        let privacy = if with_privacy {
            let protocol = text_field(details, "snmpv3_privProtocol")
                .ok_or_else(|| format!("{level} needs 'snmpv3_privProtocol' (DES or AES)"))?;
            let protocol = parse_priv_protocol(protocol).ok_or_else(|| {
                format!(
                    "snmpv3_privProtocol '{protocol}' is not DES, 3DES, AES, AES-192 or AES-256"
                )
            })?;
            let key = text_field(details, "snmpv3_privKey")
                .ok_or_else(|| format!("{level} needs 'snmpv3_privKey'"))?;
            Some((protocol, key.to_string()))
        } else {
            None
        };
        Ok(UsmCredential {
            security_name,
            auth,
            privacy,
        })
    }
}

/// net-snmp's names: `AES-192`/`AES-256` use the Blumenthal key extension, `-C` the Cisco one.
fn parse_priv_protocol(name: &str) -> Option<PrivProtocol> {
    match name.to_ascii_uppercase().as_str() {
        "AES192" | "AES-192" => Some(PrivProtocol::Aes192Blumenthal),
        "AES256" | "AES-256" => Some(PrivProtocol::Aes256Blumenthal),
        "AES192C" | "AES-192-C" => Some(PrivProtocol::Aes192Reeder),
        "AES256C" | "AES-256-C" => Some(PrivProtocol::Aes256Reeder),
        _ => name.parse().ok(),
    }
}

/// Host and port from `details.ipv4`: `192.0.2.1`, `192.0.2.1:16161`, `[2001:db8::1]:161`,
/// `2001:db8::1`, `fe80::1%eth0` or a host name (see [`collector::details::Address`]).
pub fn parse_target(address: &str) -> Result<(String, u16), String> {
    let parsed = collector::details::Address::parse(address).map_err(|e| e.0)?;
    match parsed.port {
        Some(0) => Err(format!("'{}' has an invalid port '0'", address.trim())),
        port => Ok((parsed.host.to_string(), port.unwrap_or(DEFAULT_PORT))),
    }
}

/// What went wrong talking to an agent, sorted by what the bot does about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SnmpError {
    /// The credential or address cannot be used; no packet was sent.
    #[error("{0}")]
    Config(String),
    /// No answer within timeout and retries: the agent is down, unreachable, or silently drops
    /// our requests (e.g. a wrong community).
    #[error("no answer from {target} after {retries} retries ({timeout:?} each); check the address, port, community and that the agent allows this host")]
    Timeout {
        target: String,
        retries: u32,
        timeout: Duration,
    },
    /// SNMPv3 security failed: wrong password, unknown user, unsupported level...
    #[error("SNMPv3 authentication with {target} failed for user '{user}': {reason}")]
    Authentication {
        target: String,
        user: String,
        reason: String,
    },
    /// The agent answered with an error status (e.g. noSuchName, genErr).
    #[error("agent {target} answered {status}")]
    Agent { target: String, status: String },
    /// The requested object or instance does not exist on the agent.
    #[error("agent {target} has no such object or instance")]
    NoSuchObject { target: String },
    /// A walk broke off: OIDs not increasing, or more rows than allowed.
    #[error("walk on {target} stopped: {reason}")]
    Walk { target: String, reason: String },
    /// Anything else (malformed packets, socket errors...).
    #[error("SNMP request to {target} failed: {reason}")]
    Other { target: String, reason: String },
}

impl SnmpError {
    /// Errors after which the other requests of this firing would fail the same way, so the
    /// firing stops at once instead of waiting through every OID's timeout.
    pub fn affects_whole_agent(&self) -> bool {
        matches!(
            self,
            SnmpError::Config(_) | SnmpError::Timeout { .. } | SnmpError::Authentication { .. }
        )
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

/// Receive capacity advertised to v3 agents: net-snmp answers large bulk requests with genErr
/// when it thinks our datagrams may not exceed 1472 bytes.
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
        if settings.max_in_flight == 0 || settings.max_devices == 0 {
            return Err("SNMP max in flight and max devices must be at least 1".to_string());
        }
        let bind = |address: &'static str| {
            UdpTransport::builder()
                .bind(address)
                .receive_capacity(RECEIVE_CAPACITY)
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
        })
    }
}

fn format_target(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
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
        let result = {
            let _slot = self.request_slot().await;
            request.await
        };
        let answered = match &result {
            Ok(_) => true,
            Err(error) => matches!(error.exchange_source(), async_snmp::Error::Snmp { .. }),
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

fn explain_report(status: &ReportStatus) -> String {
    match status {
        ReportStatus::WrongDigest { .. } => {
            "wrong authentication password (snmpv3_authKey) or protocol (the agent reported usmStatsWrongDigests)".to_string()
        }
        ReportStatus::DecryptionError { .. } => {
            "wrong privacy password (snmpv3_privKey) or protocol (the agent reported usmStatsDecryptionErrors)".to_string()
        }
        ReportStatus::UnknownUserName { .. } => {
            "the agent does not know this user (usmStatsUnknownUserNames)".to_string()
        }
        ReportStatus::UnsupportedSecurityLevel { .. } => {
            "the agent does not allow this security level for this user (usmStatsUnsupportedSecLevels)".to_string()
        }
        other => format!("the agent reported {other}"),
    }
}

const DES_SALT_TABLE: TableDefinition<&str, u32> = TableDefinition::new("snmp_des_salt_state");
const DES_SALT_KEY: &str = "engine_boots";

/// The DES/3DES salt state of this bot, persisted so that a restart never reuses a salt
/// (async-snmp requires it for DES privacy). Each start advances the stored epoch.
pub fn des_salt_state(database: &redb::Database) -> Result<DesSaltState, String> {
    let previous = {
        let read = database
            .begin_read()
            .map_err(|e| format!("reading the DES salt state: {e}"))?;
        match read.open_table(DES_SALT_TABLE) {
            Ok(table) => table
                .get(DES_SALT_KEY)
                .map_err(|e| format!("reading the DES salt state: {e}"))?
                .map(|v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(format!("reading the DES salt state: {e}")),
        }
    };
    let persist = |expected: Option<u32>| {
        move |state: &PersistedDesSaltState| -> Result<(), String> {
            let write = database.begin_write().map_err(|e| e.to_string())?;
            {
                let mut table = write
                    .open_table(DES_SALT_TABLE)
                    .map_err(|e| e.to_string())?;
                let current = table
                    .get(DES_SALT_KEY)
                    .map_err(|e| e.to_string())?
                    .map(|v| v.value());
                if current != expected {
                    return Err("another process advanced the DES salt state".to_string());
                }
                table
                    .insert(DES_SALT_KEY, state.engine_boots())
                    .map_err(|e| e.to_string())?;
            }
            write.commit().map_err(|e| e.to_string())
        }
    };
    let state = match previous {
        None => DesSaltState::install(persist(None)),
        Some(boots) => {
            let previous_state = PersistedDesSaltState::new(boots).map_err(|e| e.to_string())?;
            DesSaltState::restart(previous_state, persist(Some(boots)))
        }
    };
    state.map_err(|e| format!("DES salt state: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn community_credentials() {
        let v2 =
            Credential::from_details(&json!({"version": "snmpv2c", "snmpv12_community": "public"}))
                .unwrap();
        assert_eq!(
            v2,
            Credential::Community {
                version: CommunityVersion::V2c,
                community: "public".into()
            }
        );
        let v1 = Credential::from_details(&json!({"version": "snmpv1", "snmpv12_community": "x"}))
            .unwrap();
        assert!(v1.is_v1());
        assert!(!format!("{v1:?}").contains("\"x\""));
        assert!(Credential::from_details(&json!({"version": "snmpv2c"})).is_err());
        assert!(Credential::from_details(&json!({"snmpv12_community": "p"})).is_err());
        assert!(Credential::from_details(&json!({"version": "snmpv4"})).is_err());
    }

    #[test]
    fn usm_credentials() {
        let details = json!({
            "version": "snmpv3", "snmpv3_securityName": "monitor",
            "snmpv3_securityLevel": "authPriv", "snmpv3_authProtocol": "SHA",
            "snmpv3_authKey": "authsecret1", "snmpv3_privProtocol": "AES", "snmpv3_privKey": "privsecret1"
        });
        let credential = Credential::from_details(&details).unwrap();
        let Credential::Usm(usm) = &credential else {
            panic!("not usm")
        };
        assert_eq!(usm.security_name, "monitor");
        assert_eq!(usm.auth.as_ref().map(|a| a.0), Some(AuthProtocol::Sha1));
        assert_eq!(
            usm.privacy.as_ref().map(|p| p.0),
            Some(PrivProtocol::Aes128)
        );
        let shown = format!("{credential:?}");
        assert!(
            !shown.contains("authsecret1") && !shown.contains("privsecret1"),
            "{shown}"
        );
        assert!(credential.auth().is_ok());

        let sha2 = json!({"version": "snmpv3", "snmpv3_securityName": "u", "snmpv3_securityLevel": "authNoPriv",
            "snmpv3_authProtocol": "SHA-256", "snmpv3_authKey": "longenough"});
        let Credential::Usm(usm) = Credential::from_details(&sha2).unwrap() else {
            panic!()
        };
        assert_eq!(usm.auth.map(|a| a.0), Some(AuthProtocol::Sha256));
        assert!(usm.privacy.is_none());

        let des = json!({"version": "snmpv3", "snmpv3_securityName": "u", "snmpv3_securityLevel": "authPriv",
            "snmpv3_authProtocol": "MD5", "snmpv3_authKey": "longenough", "snmpv3_privProtocol": "DES", "snmpv3_privKey": "longenough"});
        assert!(Credential::from_details(&des).unwrap().uses_des());

        let no_auth = json!({"version": "snmpv3", "snmpv3_securityName": "u", "snmpv3_securityLevel": "noAuthNoPriv",
            "snmpv3_authKey": "ignored"});
        let Credential::Usm(usm) = Credential::from_details(&no_auth).unwrap() else {
            panic!()
        };
        assert!(usm.auth.is_none());
    }

    #[test]
    fn bad_usm_credentials_name_the_field_not_the_secret() {
        let missing_key = json!({"version": "snmpv3", "snmpv3_securityName": "u", "snmpv3_securityLevel": "authPriv",
            "snmpv3_authProtocol": "SHA", "snmpv3_authKey": "secretsecret", "snmpv3_privProtocol": "AES"});
        let error = Credential::from_details(&missing_key).unwrap_err();
        assert!(
            error.contains("snmpv3_privKey") && !error.contains("secretsecret"),
            "{error}"
        );
        let bad_protocol = json!({"version": "snmpv3", "snmpv3_securityName": "u", "snmpv3_securityLevel": "authNoPriv",
            "snmpv3_authProtocol": "SHA-3", "snmpv3_authKey": "secretsecret"});
        assert!(Credential::from_details(&bad_protocol)
            .unwrap_err()
            .contains("SHA-3"));
        let short = json!({"version": "snmpv3", "snmpv3_securityName": "u", "snmpv3_securityLevel": "authNoPriv",
            "snmpv3_authProtocol": "SHA", "snmpv3_authKey": "short"});
        let error = Credential::from_details(&short)
            .unwrap()
            .auth()
            .unwrap_err();
        assert!(
            !error.contains("short\"") && error.contains("'u'"),
            "{error}"
        );
        assert!(Credential::from_details(&json!({"version": "snmpv3"})).is_err());
    }

    #[test]
    fn targets() {
        assert_eq!(parse_target("192.0.2.1"), Ok(("192.0.2.1".into(), 161)));
        assert_eq!(
            parse_target(" 127.0.0.1:16161 "),
            Ok(("127.0.0.1".into(), 16161))
        );
        assert_eq!(
            parse_target("router.example"),
            Ok(("router.example".into(), 161))
        );
        assert_eq!(parse_target("2001:db8::1"), Ok(("2001:db8::1".into(), 161)));
        assert_eq!(
            parse_target("[2001:db8::1]:1161"),
            Ok(("2001:db8::1".into(), 1161))
        );
        assert_eq!(parse_target("[::1]"), Ok(("::1".into(), 161)));
        assert_eq!(
            parse_target("fe80::1%eth0"),
            Ok(("fe80::1%eth0".into(), 161))
        );
        assert_eq!(
            parse_target("router.example:1161"),
            Ok(("router.example".into(), 1161))
        );
        for bad in [
            "",
            "1.2.3.4:",
            "1.2.3.4:x",
            "1.2.3.4:70000",
            ":161",
            "[::1",
            "[::1]x",
            "1.2.3.4:0",
        ] {
            assert!(parse_target(bad).is_err(), "{bad:?}");
        }
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

    #[test]
    fn des_salt_state_advances_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let database = redb::Database::create(dir.path().join("state.redb")).unwrap();
        let first = des_salt_state(&database).unwrap();
        let second = des_salt_state(&database).unwrap();
        assert!(second.engine_boots() > first.engine_boots());
    }
}
