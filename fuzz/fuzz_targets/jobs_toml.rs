//! The standalone jobs file (`--jobs`): parsed as the framework does at every refresh, then
//! turned into job configs for each protocol, as the bots would receive them.
#![no_main]

use collector::entity::build_configs;
use collector::standalone::parse_jobs_file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(accounts) = parse_jobs_file(text) else {
        return;
    };
    for (account, data) in &accounts {
        for protocol in ["snmp", "ping", "netflow"] {
            let (configs, _problems) = build_configs(protocol, None, *account, data);
            for config in &configs {
                if protocol == "snmp" {
                    let _ = snmpbot::bot::entity_jobs(config, None);
                }
            }
        }
    }
});
