//! A Grafolean backend that only serves one account's job configs and validates and counts the
//! values bots POST: the backend of the whole-bot benchmarks in Grafolean mode. It is lean on
//! purpose (no storage, no request log) so that it is not the limit, and it runs on a thread of
//! its own whose CPU time the benchmarks print beside the bot's.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json as JsonBody, Router};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The one account's configs, as the list endpoints answer them.
pub struct AccountConfigs {
    pub entities: Vec<Json>,
    pub credentials: Vec<Json>,
    pub sensors: Vec<Json>,
}

/// The account the benchmarks use, the bot's user id and its token.
pub const ACCOUNT: u64 = 1;
pub const BOT_ID: u64 = 1_000;
pub const TOKEN: &str = "b0b5e5a3-1c2d-4e5f-8a9b-0c1d2e3f4a5b";

/// What the backend has counted so far.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub posts: u64,
    pub values: u64,
    /// Values whose path ends with the marked suffix, and of those the ones equal to 1.
    pub marked: u64,
    pub marked_ones: u64,
    /// POSTs refused (bad token, bad JSON, invalid path or number).
    pub refused: u64,
    /// Per POST: how long after its whole second it arrived (ms), and how many values it held.
    pub arrivals: Vec<(f64, u64)>,
}

struct Shared {
    lists: HashMap<&'static str, Bytes>,
    marked_suffix: String,
    counts: Mutex<Counts>,
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    p: Cow<'a, str>,
    v: f64,
}

/// A running counting backend.
pub struct CountingBackend {
    pub address: SocketAddr,
    shared: Arc<Shared>,
    /// The thread serving, for its CPU time (`/proc/<tid>/stat`).
    pub thread_id: u32,
}

impl CountingBackend {
    /// Starts serving on a free loopback port, on a thread pinned to `cpu`. `marked_suffix`
    /// names the values the benchmark counts apart (e.g. `.p0.ok`, one per ping).
    pub fn start(
        configs: AccountConfigs,
        marked_suffix: &str,
        cpu: usize,
    ) -> std::io::Result<CountingBackend> {
        let list = |items: Vec<Json>| Bytes::from(json!({ "list": items }).to_string());
        let lists = HashMap::from([
            ("entities", list(configs.entities)),
            ("credentials", list(configs.credentials)),
            ("sensors", list(configs.sensors)),
        ]);
        let shared = Arc::new(Shared {
            lists,
            marked_suffix: marked_suffix.to_string(),
            counts: Mutex::default(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let (started, thread_id) = std::sync::mpsc::channel();
        let app = router(shared.clone());
        std::thread::spawn(move || {
            crate::measure::pin_to(cpu);
            // SAFETY: gettid has no preconditions.
            let _ = started.send(unsafe { libc::gettid() } as u32);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async move {
                    if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                        let _ = axum::serve(listener, app).await;
                    }
                });
            }
        });
        let thread_id = thread_id.recv().map_err(std::io::Error::other)?;
        Ok(CountingBackend {
            address,
            shared,
            thread_id,
        })
    }

    /// `BACKEND_URL` for the bot.
    pub fn url(&self) -> String {
        format!("http://{}/api", self.address)
    }

    /// A copy of the counts.
    pub fn counts(&self) -> Counts {
        self.shared
            .counts
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/api/status/info",
            get(|| async { JsonBody(json!({"db_migration_needed": false, "user_exists": true})) }),
        )
        .route(
            "/api/profile/",
            get(|| async { JsonBody(json!({ "user_id": BOT_ID })) }),
        )
        .route(
            "/api/accounts/",
            get(|| async { JsonBody(json!({"list": [{"id": ACCOUNT, "name": "bench"}]})) }),
        )
        .route("/api/accounts/{account}/{list}/", get(list))
        .route("/api/accounts/{account}/values/", post(values))
        .with_state(shared)
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Path((account, list)): Path<(u64, String)>,
) -> Result<Bytes, StatusCode> {
    match shared.lists.get(list.as_str()) {
        Some(body) if account == ACCOUNT => Ok(body.clone()),
        _ => Err(StatusCode::NOT_FOUND),
    }
}

async fn values(
    State(shared): State<Arc<Shared>>,
    Path(account): Path<u64>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> StatusCode {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let valid = account == ACCOUNT && query.get("b").is_some_and(|b| b == TOKEN);
    let items = serde_json::from_slice::<Vec<Item<'_>>>(&body).ok();
    let mut counts = shared.counts.lock().unwrap_or_else(|e| e.into_inner());
    let Some(items) = items.filter(|items| {
        valid
            && items
                .iter()
                .all(|i| i.v.is_finite() && collector::value::path_problem(&i.p).is_none())
    }) else {
        counts.refused += 1;
        return StatusCode::BAD_REQUEST;
    };
    counts.posts += 1;
    counts.values += items.len() as u64;
    for item in items
        .iter()
        .filter(|i| i.p.ends_with(&shared.marked_suffix))
    {
        counts.marked += 1;
        counts.marked_ones += u64::from(item.v == 1.0);
    }
    counts
        .arrivals
        .push(((now - now.floor()) * 1000.0, items.len() as u64));
    StatusCode::NO_CONTENT
}

/// The value-weighted percentile `p` (0..=1) of arrivals (ms after their whole second).
pub fn lateness_percentile(arrivals: &[(f64, u64)], p: f64) -> f64 {
    let mut sorted = arrivals.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: u64 = sorted.iter().map(|a| a.1).sum();
    let wanted = (total as f64 * p).ceil() as u64;
    let mut seen = 0;
    for (ms, count) in sorted {
        seen += count;
        if seen >= wanted {
            return ms;
        }
    }
    0.0
}
