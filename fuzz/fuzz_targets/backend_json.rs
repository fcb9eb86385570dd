//! The backend's JSON as the bots read it: a profile, and one account's entities, credentials
//! and sensors (the list endpoints' `{"list": [...]}`), turned into job configs and then into
//! each bot's jobs: SNMP credentials, sensors (OIDs, expressions, output paths) and addresses,
//! ping probe settings, NetFlow exporter addresses. The first byte picks which body is read.
#![no_main]

use collector::entity::{build_configs, AccountData, CredentialRecord, EntityRecord, SensorRecord};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

#[derive(Deserialize)]
struct List<T> {
    list: Vec<T>,
}

#[derive(Deserialize)]
struct Profile {
    #[allow(dead_code)]
    user_id: u64,
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let data = match selector % 5 {
        0 => {
            let _ = serde_json::from_slice::<Profile>(body);
            return;
        }
        1 => match serde_json::from_slice::<List<EntityRecord>>(body) {
            Ok(l) => AccountData {
                entities: l.list,
                ..Default::default()
            },
            Err(_) => return,
        },
        2 => match serde_json::from_slice::<List<CredentialRecord>>(body) {
            Ok(l) => AccountData {
                credentials: l.list,
                ..Default::default()
            },
            Err(_) => return,
        },
        3 => match serde_json::from_slice::<List<SensorRecord>>(body) {
            Ok(l) => AccountData {
                sensors: l.list,
                ..Default::default()
            },
            Err(_) => return,
        },
        _ => match serde_json::from_slice::<AccountData>(body) {
            Ok(data) => data,
            Err(_) => return,
        },
    };
    for protocol in ["snmp", "ping", "netflow"] {
        let (configs, _problems) = build_configs(protocol, Some(1), 1, &data);
        for config in &configs {
            match protocol {
                "snmp" => {
                    let _ = snmpbot::bot::entity_jobs(config, Some(300));
                    if let Some(address) = config.address() {
                        let _ = snmpbot::session::parse_target(address);
                    }
                }
                "ping" => {
                    let _ = pingbot::credential::ProbeSettings::from_details(
                        &config.credential_details,
                    );
                    let _ = pingbot::bot::job_of(config);
                }
                _ => {
                    let _ = config
                        .address()
                        .map(|a| a.trim().parse::<std::net::IpAddr>());
                }
            }
        }
    }
});
