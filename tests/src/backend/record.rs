//! The request log a test inspects: what the bot asked, what it got, never its token.

use std::time::SystemTime;

use crate::fixture::Id;

/// The status recorded for a request whose connection was closed by a fault instead of answered.
pub const CONNECTION_CLOSED: u16 = 0;

/// One request the backend received.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    pub method: String,
    /// The path as sent (not percent-decoded), e.g. `/api/accounts/5/entities/`.
    pub path: String,
    /// The query string without any `b=` parameter (`""` if nothing else was given).
    pub query: String,
    /// The answer's status, or [`CONNECTION_CLOSED`].
    pub status: u16,
    /// Whether the request carried an `Authorization` header (a bot must never send one).
    pub had_authorization: bool,
    /// Whether the request carried a `b=` token at all.
    pub had_token: bool,
    /// The bot the request authenticated as, if it did.
    pub bot: Option<Id>,
    pub at: SystemTime,
}

impl RequestRecord {
    /// Whether this is `method` on a path starting with `path_prefix`.
    pub fn is(&self, method: &str, path_prefix: &str) -> bool {
        self.method == method && self.path.starts_with(path_prefix)
    }

    /// The account id the path addresses (`/api/accounts/{a}/...`), if any.
    pub fn account(&self) -> Option<Id> {
        let rest = self.path.strip_prefix("/api/accounts/")?;
        rest.split('/').next()?.parse().ok()
    }
}
