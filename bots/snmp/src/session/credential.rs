//! SNMP credentials (contract §4.6): versions, communities and SNMPv3 USM settings read from
//! a credential's `details`, turned into async-snmp's `Auth`. Secrets never reach `Debug`.

use async_snmp::{Auth, AuthProtocol, PrivProtocol, UsmConfig};
use serde_json::Value as Json;
use std::fmt;

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

    pub(crate) fn auth(&self) -> Result<Auth, String> {
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

    pub(crate) fn uses_des(&self) -> bool {
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
}
