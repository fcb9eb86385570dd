//! The Grafolean backend client: every request a bot makes goes through here, with the token in
//! the `b` query parameter only (never an `Authorization` header) and never in an error message.

use crate::entity::{
    BuiltConfigs, ConfigBuilder, CredentialRecord, EntityRecord, Protocol, SensorRecord,
};
use crate::metrics::{label, Metrics};
use crate::redact::scrub;
use bytes::Bytes;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

mod list;

/// A failed backend request. Its text names the operation (method and path, no query) and never
/// the token.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    #[error("{operation}: {message}")]
    Transport { operation: String, message: String },
    #[error("{operation}: HTTP {status}: {body}")]
    Status {
        operation: String,
        status: u16,
        body: String,
    },
    #[error("{operation}: unexpected answer: {message}")]
    Decode { operation: String, message: String },
}

impl BackendError {
    /// The HTTP status, when the backend answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            BackendError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The likely cause and fix of a problem a user can set right (URL, token), if there is one.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            BackendError::Status { status: 404, .. } => Some(
                "the backend has no such route: does BACKEND_URL end with the API prefix, \
                 e.g. http://grafolean/api?",
            ),
            BackendError::Status {
                status: 401 | 403, ..
            } => Some(
                "the backend refused the token: is BOT_TOKEN a bot's token from the Grafolean UI?",
            ),
            BackendError::Decode { message, .. } if message.contains("HTML") => Some(
                "that is not the Grafolean API: does BACKEND_URL end with the API prefix, \
                 e.g. http://grafolean/api?",
            ),
            BackendError::Transport { message, .. } if message.contains("cannot connect") => {
                Some("is the backend running, and are the host and port in BACKEND_URL right?")
            }
            _ => None,
        }
    }

    /// Whether trying again later may help: no answer at all, or a 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            BackendError::Transport { .. } => true,
            BackendError::Status { status, .. } => *status >= 500,
            BackendError::Decode { .. } => false,
        }
    }
}

/// A value with the time it was measured, for `PUT` (contract §4.9).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimedValue {
    pub p: String,
    pub v: f64,
    pub t: f64,
}

#[derive(Deserialize)]
struct List<T> {
    list: Vec<T>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: u64,
}

#[derive(Deserialize)]
struct Profile {
    user_id: u64,
}

#[derive(Deserialize)]
struct StatusInfo {
    #[serde(default)]
    db_migration_needed: Option<bool>,
    #[serde(default)]
    user_exists: Option<bool>,
}

/// A prepared values URL of one account: parsed once, token included; never logged.
#[derive(Clone)]
pub struct ValuesUrl {
    url: reqwest::Url,
    /// `POST /accounts/<id>/values/`, for error messages.
    operation: String,
}

/// A handle to the backend; cheap to clone, one connection pool per process.
#[derive(Clone)]
pub struct BackendClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    token: String,
    metrics: Metrics,
}

impl BackendClient {
    /// `base_url` is `BACKEND_URL`, which already ends in the API prefix (`http://host/api`).
    /// `pool_size` should be at least the number of requests that may be in flight at once.
    pub fn new(
        base_url: &str,
        token: &str,
        timeout: Duration,
        pool_size: usize,
        metrics: Metrics,
    ) -> Result<BackendClient, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(pool_size.max(16))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(BackendClient {
            inner: Arc::new(Inner {
                http,
                base: base_url.trim_end_matches('/').to_string(),
                token: token.trim().to_string(),
                metrics,
            }),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        authenticated: bool,
    ) -> Result<Vec<u8>, BackendError> {
        let operation = format!("{method} {path}");
        let request = self.request(method, path, authenticated);
        self.send_request(request, operation, body).await
    }

    /// A request to `path` under `BACKEND_URL`, with the token when `authenticated`.
    fn request(&self, method: Method, path: &str, authenticated: bool) -> reqwest::RequestBuilder {
        let url = format!("{}{}", self.inner.base, path);
        let request = self.inner.http.request(method, &url);
        if authenticated {
            request.query(&[("b", self.inner.token.as_str())])
        } else {
            request
        }
    }

    /// Sends a request whose URL (token included) is already built; `operation` names it in
    /// errors without the query. Returns the answer's body.
    async fn send_request(
        &self,
        request: reqwest::RequestBuilder,
        operation: String,
        body: Option<Bytes>,
    ) -> Result<Vec<u8>, BackendError> {
        let mut answer = Vec::new();
        self.exchange(request, operation, body, &mut |chunk| {
            answer.extend_from_slice(chunk);
            Ok(())
        })
        .await?;
        Ok(answer)
    }

    /// Sends a request and hands the body of a 2xx answer to `read` chunk by chunk as it
    /// arrives; `read` refuses the answer with the reason (a decode error). Other statuses and
    /// transport problems are errors, timed and counted in the metrics.
    async fn exchange(
        &self,
        mut request: reqwest::RequestBuilder,
        operation: String,
        body: Option<Bytes>,
        read: &mut (dyn FnMut(&[u8]) -> Result<(), String> + Send),
    ) -> Result<(), BackendError> {
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let started = std::time::Instant::now();
        let transport = |e: reqwest::Error| BackendError::Transport {
            operation: operation.clone(),
            message: scrub(&transport_problem(&e, &self.inner.base), &self.inner.token),
        };
        let result = async {
            let mut response = request.send().await.map_err(transport)?;
            let status = response.status().as_u16();
            if !(200..300).contains(&status) {
                let bytes = response.bytes().await.map_err(transport)?;
                let text = if looks_like_html(&bytes) {
                    "(an HTML page)".to_string()
                } else {
                    String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned()
                };
                return Err(BackendError::Status {
                    operation: operation.clone(),
                    status,
                    body: scrub(text.trim(), &self.inner.token),
                });
            }
            while let Some(chunk) = response.chunk().await.map_err(transport)? {
                read(&chunk).map_err(|message| BackendError::Decode {
                    operation: operation.clone(),
                    message,
                })?;
            }
            Ok(())
        }
        .await;
        self.inner
            .metrics
            .framework
            .backend_request_seconds
            .observe(started.elapsed().as_secs_f64());
        let kind = match &result {
            Err(BackendError::Status { status, .. }) => Some(status.to_string()),
            Err(BackendError::Transport { .. }) => Some("transport".to_string()),
            _ => None,
        };
        if let Some(kind) = kind {
            self.inner
                .metrics
                .framework
                .backend_errors
                .get_or_create(&label("status", kind))
                .inc();
        }
        result
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, BackendError> {
        let bytes = self.send(Method::GET, path, None, true).await?;
        decode(&format!("GET {path}"), &bytes)
    }

    /// Whether the backend is up, migrated and set up (contract §5.1).
    pub async fn is_ready(&self) -> Result<bool, BackendError> {
        let bytes = self.send(Method::GET, "/status/info", None, false).await?;
        let info: StatusInfo = decode("GET /status/info", &bytes)?;
        Ok(info.db_migration_needed == Some(false) && info.user_exists == Some(true))
    }

    /// Polls `/status/info` every `every` until the backend is ready. Returns false if `shutdown`
    /// was cancelled first.
    /// A problem is logged once with its likely fix, then again only when it changes.
    pub async fn wait_ready(&self, every: Duration, shutdown: &CancellationToken) -> bool {
        let mut last_problem = String::new();
        loop {
            let problem = match self.is_ready().await {
                Ok(true) => return true,
                Ok(false) => "backend is not ready yet (migration or setup pending)".to_string(),
                Err(e) => match e.hint() {
                    Some(hint) => format!("waiting for the backend: {e}: {hint}"),
                    None => format!("waiting for the backend: {e}"),
                },
            };
            if problem != last_problem {
                tracing::warn!("{problem} (checking again every {}s)", every.as_secs());
                last_problem = problem;
            } else {
                tracing::debug!("{problem}");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Our own user id: the bot id that entities name in `protocols.<p>.bot`.
    pub async fn profile(&self) -> Result<u64, BackendError> {
        Ok(self.get::<Profile>("/profile/").await?.user_id)
    }

    /// The ids of the accounts this bot may list, in the backend's order.
    pub async fn list_accounts(&self) -> Result<Vec<u64>, BackendError> {
        let list: List<IdOnly> = self.get("/accounts/").await?;
        Ok(list.list.into_iter().map(|a| a.id).collect())
    }

    /// Every entity of an account (filter client-side: the backend ignores query filters).
    pub async fn list_entities(&self, account: u64) -> Result<Vec<EntityRecord>, BackendError> {
        self.list_entities_kept(account, Some).await
    }

    /// What `keep` makes of the entities of an account, each entity parsed and handed to it
    /// one at a time: an account's list holds every interface of every device (51,000 entities
    /// at 1,000 devices), and a bot that wants a few of them, or a small form of each, need
    /// not hold them all at once.
    pub async fn list_entities_kept<T: Send>(
        &self,
        account: u64,
        keep: impl FnMut(EntityRecord) -> Option<T> + Send,
    ) -> Result<Vec<T>, BackendError> {
        let path = format!("/accounts/{account}/entities/");
        let request = self.request(Method::GET, &path, true);
        let operation = format!("GET {path}");
        let mut list = list::KeptList::new(keep);
        self.exchange(request, operation.clone(), None, &mut |chunk| {
            list.feed(chunk)
        })
        .await?;
        list.finish()
            .map_err(|message| BackendError::Decode { operation, message })
    }

    /// The job configs of an account for `protocol`: its credentials and sensors first (two
    /// requests, made concurrently), then its entities, each made into its config as it is
    /// parsed (see [`ConfigBuilder`]).
    pub async fn account_configs(
        &self,
        account: u64,
        protocol: Protocol<'_>,
        bot_id: Option<u64>,
    ) -> Result<BuiltConfigs, BackendError> {
        let credentials_path = format!("/accounts/{account}/credentials/");
        let sensors_path = format!("/accounts/{account}/sensors/");
        let (credentials, sensors) = tokio::try_join!(
            self.get::<List<CredentialRecord>>(&credentials_path),
            self.get::<List<SensorRecord>>(&sensors_path),
        )?;
        let mut builder =
            ConfigBuilder::new(protocol, bot_id, account, credentials.list, sensors.list);
        self.list_entities_kept(account, |entity| {
            builder.add(entity);
            None::<()>
        })
        .await?;
        Ok(builder.finish())
    }

    /// Creates an entity (contract §4.10) and returns its id.
    pub async fn create_entity(&self, account: u64, entity: &Json) -> Result<u64, BackendError> {
        let path = format!("/accounts/{account}/entities/");
        let bytes = self
            .send(Method::POST, &path, Some(json_body(entity)), true)
            .await?;
        let created: IdOnly = decode(&format!("POST {path}"), &bytes)?;
        Ok(created.id)
    }

    /// Replaces an entity's name, type, details and protocols (an absent `protocols` wipes them).
    pub async fn update_entity(
        &self,
        account: u64,
        entity_id: u64,
        entity: &Json,
    ) -> Result<(), BackendError> {
        let path = format!("/accounts/{account}/entities/{entity_id}");
        self.send(Method::PUT, &path, Some(json_body(entity)), true)
            .await?;
        Ok(())
    }

    /// Deletes an entity and all its descendants.
    pub async fn delete_entity(&self, account: u64, entity_id: u64) -> Result<(), BackendError> {
        let path = format!("/accounts/{account}/entities/{entity_id}");
        self.send(Method::DELETE, &path, None, true).await?;
        Ok(())
    }

    /// The values URL of an account with the token in it, parsed once and reused for every POST
    /// to that account (contract §4.8).
    pub fn values_url(&self, account: u64) -> Result<ValuesUrl, BackendError> {
        let path = format!("/accounts/{account}/values/");
        let operation = format!("POST {path}");
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.inner.base)).map_err(|e| {
            BackendError::Transport {
                operation: operation.clone(),
                message: format!("BACKEND_URL does not make a valid URL: {e}"),
            }
        })?;
        url.query_pairs_mut().append_pair("b", &self.inner.token);
        Ok(ValuesUrl { url, operation })
    }

    /// Stores values at the server's time (contract §4.8); `body` is a JSON list of `{p, v}`,
    /// shared (not copied) with the caller, which keeps it for a retry.
    pub async fn post_values(&self, url: &ValuesUrl, body: Bytes) -> Result<(), BackendError> {
        let request = self.inner.http.post(url.url.clone());
        self.send_request(request, url.operation.clone(), Some(body))
            .await?;
        Ok(())
    }

    /// Stores values with their own timestamps (contract §4.9), for replaying late values.
    pub async fn put_values(
        &self,
        account: u64,
        values: &[TimedValue],
    ) -> Result<(), BackendError> {
        let path = format!("/accounts/{account}/values/");
        self.send(Method::PUT, &path, Some(json_body(values)), true)
            .await?;
        Ok(())
    }
}

/// Parses a JSON answer; an HTML page (a web server or the UI instead of the API) is named as such
/// rather than pasted into the log.
fn decode<T: DeserializeOwned>(operation: &str, bytes: &[u8]) -> Result<T, BackendError> {
    serde_json::from_slice(bytes).map_err(|e| decode_error(operation, bytes, e))
}

fn decode_error(operation: &str, bytes: &[u8], error: serde_json::Error) -> BackendError {
    BackendError::Decode {
        operation: operation.to_string(),
        message: if looks_like_html(bytes) {
            "an HTML page instead of JSON".to_string()
        } else {
            error.to_string()
        },
    }
}

/// A whole `{"list": [...]}` answer read as [`list::KeptList`] reads one arriving in chunks.
#[cfg(test)]
fn kept_list<I: DeserializeOwned, T>(
    operation: &str,
    bytes: &[u8],
    keep: impl FnMut(I) -> Option<T>,
) -> Result<Vec<T>, BackendError> {
    let mut list = list::KeptList::new(keep);
    list.feed(bytes)
        .and_then(|()| list.finish())
        .map_err(|message| BackendError::Decode {
            operation: operation.to_string(),
            message,
        })
}

fn looks_like_html(bytes: &[u8]) -> bool {
    let start = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).to_ascii_lowercase();
    let start = start.trim_start();
    start.starts_with("<!doctype html") || start.starts_with("<html") || start.starts_with("<head")
}

/// What went wrong below HTTP, with the causes reqwest keeps in its source chain ("connection
/// refused") and the host and port that were tried. The URL itself is left out: it holds the token.
fn transport_problem(error: &reqwest::Error, base: &str) -> String {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !causes.iter().any(|c: &String| c.contains(&text)) {
            causes.push(text);
        }
        source = cause.source();
    }
    let cause = causes.last().cloned().unwrap_or_default();
    let address = reqwest::Url::parse(base)
        .ok()
        .and_then(|url| {
            Some(format!(
                "{}:{}",
                url.host_str()?,
                url.port_or_known_default()?
            ))
        })
        .unwrap_or_default();
    if error.is_timeout() {
        format!("no answer from {address} within BACKEND_TIMEOUT")
    } else if error.is_connect() {
        format!("cannot connect to {address}: {cause}")
    } else if cause.is_empty() {
        crate::redact::redact_url(&error.to_string())
    } else {
        format!("{address}: {cause}")
    }
}

/// Serializes a request body. Serializing plain data (maps, strings, finite or non-finite floats)
/// cannot fail; an empty body would make the backend answer 500, which is reported as usual.
fn json_body<T: Serialize + ?Sized>(body: &T) -> Bytes {
    serde_json::to_vec(body).unwrap_or_default().into()
}
