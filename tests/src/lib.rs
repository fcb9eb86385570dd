//! Test support for end-to-end tests: an in-process Grafolean test backend ([`TestBackend`]) that
//! serves a [`Fixture`] over real HTTP on loopback and enforces the backend contract
//! (`docs/grafolean-bot-api.md` §1-§4): token only in `b=`, 401/403 before routing, FastAPI's 404/405/422,
//! the value path/value/timestamp rules with their exact 400/500 answers, 100-item pages with
//! autocommit, entity schema and binding checks, cascading deletes.
//!
//! # Writing a test
//!
//! ```no_run
//! use std::time::Duration;
//! use e2e::{Bot, Fault, Fixture, TestBackend};
//! use serde_json::json;
//!
//! # async fn example() {
//! const ACME: i64 = 1409012345;
//! const BOT: i64 = 1620000012;
//! let mut fixture = Fixture::new();
//! fixture
//!     .account(ACME, "Acme")
//!     .bot(Bot::systemwide(BOT, "ping"))          // or Bot::account_bot(BOT, ACME, "ping")
//!     .credential(ACME, 731002103, "ping", e2e::default_credential_details("ping"))
//!     .sensor(ACME, 842003211, "ping", Some(60), json!({}))
//!     .device(ACME, 1348300224, "core-router", "127.0.0.1")
//!     .bind(1348300224, "ping", 731002103, &[(842003211, Some(1))], BOT);
//! let backend = TestBackend::start(fixture).await;
//!
//! // Start the bot binary with BACKEND_URL=backend.url() and BOT_TOKEN=backend.token(BOT), then:
//! let values = backend
//!     .wait_for_values(ACME, |v| v.iter().any(|v| v.path == "entity.1348300224.ping.success"), Duration::from_secs(10))
//!     .await;
//!
//! // Change the configuration between refreshes...
//! backend.update(|f| {
//!     f.set_interval(1348300224, "ping", 842003211, Some(2));
//! });
//! // ...count what one refresh asked for...
//! let mark = backend.request_mark();
//! backend.wait_for_requests("GET", "/api/accounts/1409012345/sensors", 1, Duration::from_secs(5)).await;
//! let refresh = backend.requests_since(mark);
//! // ...and break things.
//! backend.inject(Fault::on("POST", "/api/accounts/1409012345/values").status(503).times(3));
//! backend.stop().await;     // connection refused, open connections dropped
//! backend.restart().await.expect("same port"); // values and fixture kept
//! backend.assert_no_authorization_header();
//! # let _ = (values, refresh);
//! # }
//! ```
//!
//! Notes: the backend runs on the tokio runtime that starts it, so a test must not block that
//! runtime's threads (use `tokio::process` and async waits for bot processes), and on real time (a
//! paused test clock would make its waiting helpers time out at once while a bot process works).
//! Do not call the backend from inside [`TestBackend::update`]'s closure (it holds the fixture
//! lock). POSTed values are stored at the wall-clock time of the request, PUT values at their `t`.
//!
//! The `test-backend` binary serves [`Fixture::generated`] for manual runs and benchmarks.

pub mod alert_sinks;
pub mod alertmanager;
pub mod backend;
pub mod captures;
pub mod fixture;
pub mod line_protocol;
pub mod metrics;
pub mod process;
pub mod receiver;

pub use backend::{
    Fault, FaultId, FaultRequest, RequestRecord, StoredValue, TestBackend, WriteMethod,
    CONNECTION_CLOSED,
};
pub use fixture::{
    default_credential_details, default_sensor_details, Account, Bot, Credential, Entity, Fixture,
    Id, Permission, ProtocolBinding, SeededIds, Sensor, SensorBinding, StatusInfo, GENERATED_BOT,
};
pub mod webdriver;
