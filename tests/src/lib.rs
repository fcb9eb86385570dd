//! Test support for end-to-end tests: an in-process Grafolean test backend ([`TestBackend`]) that
//! serves a [`Fixture`] and enforces the backend contract (`/work/shared/grafolean-bot-api.md` §1-§4),
//! records requests and values, and injects failures.
//!
//! A typical test builds a fixture, starts the backend, runs a bot binary with
//! `BACKEND_URL=backend.url()` and `BOT_TOKEN=backend.token(bot)`, then waits for values with
//! [`TestBackend::wait_for_values`].

pub mod backend;
pub mod fixture;
pub mod process;

pub use backend::{
    Fault, FaultId, FaultRequest, RequestRecord, StoredValue, TestBackend, WriteMethod,
    CONNECTION_CLOSED,
};
pub use fixture::{
    default_credential_details, default_sensor_details, Account, Bot, Credential, Entity, Fixture,
    Id, Permission, ProtocolBinding, SeededIds, Sensor, SensorBinding, StatusInfo, GENERATED_BOT,
};
