//! Failure injection: rules that make the backend answer differently from the contract for chosen
//! requests (an error status, a slow answer, invalid JSON, a dropped connection), to test how bots cope.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What a fault rule sees of a request (never the token).
#[derive(Clone, Copy, Debug)]
pub struct FaultRequest<'a> {
    pub method: &'a str,
    /// The path as sent, e.g. `/api/accounts/5/entities/`.
    pub path: &'a str,
    /// The request body, e.g. to refuse chosen values of a POST.
    pub body: &'a [u8],
}

type Predicate = Arc<dyn Fn(&FaultRequest<'_>) -> bool + Send + Sync>;

/// What a matching request gets instead of its normal answer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum FaultAction {
    /// Only the delay applies; then the request is served normally.
    Normal,
    Respond {
        status: u16,
        content_type: Option<String>,
        body: Vec<u8>,
    },
    /// The connection is closed without any response.
    CloseConnection,
}

/// A failure injection rule: which requests (method, path prefix, predicate; all that are set must
/// match), what they get, after which delay, and how many times. Build with [`Fault::on`],
/// [`Fault::on_path`], [`Fault::all`] or [`Fault::when`], then install with
/// [`TestBackend::inject`](crate::TestBackend::inject).
///
/// ```no_run
/// # use e2e::Fault;
/// # use std::time::Duration;
/// Fault::on("GET", "/api/accounts/5/").status(403);            // one account refuses
/// Fault::on("POST", "/api/accounts/5/values").status(503).times(2); // two failed deliveries
/// Fault::on("GET", "/api/accounts/5/entities").invalid_json();
/// Fault::all().delay(Duration::from_secs(2));                  // a slow backend
/// Fault::on_path("/api/").close_connection();                  // connections dropped
/// ```
#[derive(Clone)]
pub struct Fault {
    pub(crate) method: Option<String>,
    pub(crate) path_prefix: Option<String>,
    pub(crate) predicate: Option<Predicate>,
    pub(crate) delay: Option<Duration>,
    pub(crate) action: FaultAction,
    pub(crate) times: Option<usize>,
}

impl fmt::Debug for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fault")
            .field("method", &self.method)
            .field("path_prefix", &self.path_prefix)
            .field("predicate", &self.predicate.as_ref().map(|_| "<fn>"))
            .field("delay", &self.delay)
            .field("action", &self.action)
            .field("times", &self.times)
            .finish()
    }
}

impl Fault {
    fn base() -> Fault {
        Fault {
            method: None,
            path_prefix: None,
            predicate: None,
            delay: None,
            action: FaultAction::Normal,
            times: None,
        }
    }

    /// Requests with this method (HEAD is not GET here) whose path starts with `path_prefix`.
    pub fn on(method: &str, path_prefix: &str) -> Fault {
        Fault {
            method: Some(method.to_ascii_uppercase()),
            path_prefix: Some(path_prefix.to_string()),
            ..Fault::base()
        }
    }

    /// Requests of any method whose path starts with `path_prefix`.
    pub fn on_path(path_prefix: &str) -> Fault {
        Fault {
            path_prefix: Some(path_prefix.to_string()),
            ..Fault::base()
        }
    }

    /// Every request, `/api/status/info` included.
    pub fn all() -> Fault {
        Fault::base()
    }

    /// Requests for which `predicate` is true.
    pub fn when(predicate: impl Fn(&FaultRequest<'_>) -> bool + Send + Sync + 'static) -> Fault {
        Fault {
            predicate: Some(Arc::new(predicate)),
            ..Fault::base()
        }
    }

    /// Also requires `predicate`.
    pub fn and(
        mut self,
        predicate: impl Fn(&FaultRequest<'_>) -> bool + Send + Sync + 'static,
    ) -> Fault {
        self.predicate = Some(match self.predicate.take() {
            None => Arc::new(predicate),
            Some(first) => Arc::new(move |r: &FaultRequest<'_>| first(r) && predicate(r)),
        });
        self
    }

    /// Answer `status` with its reason phrase as plain text.
    pub fn status(self, status: u16) -> Fault {
        let reason = axum::http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Injected fault");
        self.respond(status, Some("text/plain; charset=utf-8"), reason)
    }

    /// Answer exactly this status, content type and body.
    pub fn respond(
        mut self,
        status: u16,
        content_type: Option<&str>,
        body: impl AsRef<[u8]>,
    ) -> Fault {
        self.action = FaultAction::Respond {
            status,
            content_type: content_type.map(str::to_string),
            body: body.as_ref().to_vec(),
        };
        self
    }

    /// Answer `status` with a JSON body.
    pub fn json(self, status: u16, body: &serde_json::Value) -> Fault {
        self.respond(status, Some("application/json"), body.to_string())
    }

    /// Answer 200 with a JSON content type and a truncated, unparsable body.
    pub fn invalid_json(self) -> Fault {
        self.respond(
            200,
            Some("application/json"),
            r#"{"list":[{"id":12,"name":"#,
        )
    }

    /// Close the connection without answering.
    pub fn close_connection(mut self) -> Fault {
        self.action = FaultAction::CloseConnection;
        self
    }

    /// Wait this long before answering (normally, unless another action is set).
    pub fn delay(mut self, delay: Duration) -> Fault {
        self.delay = Some(delay);
        self
    }

    /// Apply to the first `n` matching requests only.
    pub fn times(mut self, n: usize) -> Fault {
        self.times = Some(n);
        self
    }

    fn matches(&self, request: &FaultRequest<'_>) -> bool {
        self.method.as_deref().is_none_or(|m| m == request.method)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| request.path.starts_with(p))
            && self.predicate.as_ref().is_none_or(|p| p(request))
    }
}

/// Handle of an installed fault, to remove it or count its hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FaultId(pub(crate) u64);

/// The installed faults, first match wins.
#[derive(Default)]
pub(crate) struct FaultTable {
    next_id: u64,
    rules: Vec<(FaultId, Fault, usize)>,
}

impl FaultTable {
    pub(crate) fn add(&mut self, fault: Fault) -> FaultId {
        self.next_id += 1;
        let id = FaultId(self.next_id);
        self.rules.push((id, fault, 0));
        id
    }

    pub(crate) fn remove(&mut self, id: FaultId) {
        self.rules.retain(|(rule, _, _)| *rule != id);
    }

    pub(crate) fn clear(&mut self) {
        self.rules.clear();
    }

    pub(crate) fn hits(&self, id: FaultId) -> usize {
        self.rules
            .iter()
            .find(|(rule, _, _)| *rule == id)
            .map(|(_, _, hits)| *hits)
            .unwrap_or(0)
    }

    /// The delay and action for a request, counting the hit; None when no rule applies.
    pub(crate) fn apply(
        &mut self,
        request: &FaultRequest<'_>,
    ) -> Option<(Option<Duration>, FaultAction)> {
        let (_, fault, hits) = self.rules.iter_mut().find(|(_, fault, hits)| {
            fault.times.is_none_or(|n| *hits < n) && fault.matches(request)
        })?;
        *hits += 1;
        Some((fault.delay, fault.action.clone()))
    }
}
