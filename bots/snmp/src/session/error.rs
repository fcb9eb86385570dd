//! What went wrong talking to an agent, in terms a user can act on.

use async_snmp::v3::ReportStatus;
use std::time::Duration;

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

/// A v3 report status in words, naming the setting to check.
pub(crate) fn explain_report(status: &ReportStatus) -> String {
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
