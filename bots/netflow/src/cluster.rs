//! NetFlow in a cluster (`CLUSTER_MEMBERS` > 1): exporters send to addresses, not to jobs, so
//! the split is by exporter entity. Every member runs every account's window jobs, each with
//! only the entities it owns (rendezvous hashing on the entity id), so each entity's flows are
//! reported by exactly one member. The account total (`netflow.{label}.{direction}`) would be a
//! partial sum on every member, posted N times; members leave it out.

use crate::flow::Direction;
use collector::cluster::Membership;
use collector::EntityConfig;

/// The entities of `configs` this member reports; all of them outside a cluster.
pub fn owned_entities<'a>(
    configs: &'a [EntityConfig],
    membership: &'a Membership,
) -> impl Iterator<Item = &'a EntityConfig> + 'a {
    configs
        .iter()
        .filter(|config| membership.owns_entity(config.entity_id))
}

/// Whether `path` is an account total of window `label` (`netflow.1min.ingress`...).
pub fn is_account_total(label: &str, path: &str) -> bool {
    Direction::ALL
        .iter()
        .any(|direction| path == format!("netflow.{label}.{}", direction.label()))
}

/// Logs which exporters this member reports for an account, so that exporters (or a UDP load
/// balancer's per-exporter map) can be pointed at it.
pub fn log_owned(account: u64, owned: &[EntityConfig], all: usize, membership: &Membership) {
    let exporters: Vec<String> = owned
        .iter()
        .map(|e| {
            let address = e.address().unwrap_or("?");
            format!("{address} (entity {})", e.entity_id)
        })
        .collect();
    tracing::info!(
        account,
        member = membership.member(),
        members = membership.members(),
        owned = owned.len(),
        of = all,
        "NetFlow exporters this member reports: {}",
        exporters.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::windows::WINDOWS;
    use crate::{NetflowArgs, NetflowBot, NetflowJob};
    use collector::job::Placement;
    use collector::{Collector, Context};
    use serde_json::json;

    fn config(entity_id: u64) -> EntityConfig {
        EntityConfig {
            entity_id,
            account_id: 5,
            name: format!("exporter {entity_id}"),
            entity_type: "device".into(),
            parent: None,
            details: json!({"ipv4": format!("192.0.2.{}", entity_id % 250)}),
            credential_details: json!({}).into(),
            sensors: Vec::new(),
        }
    }

    #[test]
    fn each_entity_is_reported_by_exactly_one_member() {
        let configs: Vec<EntityConfig> = (0..200).map(|i| config(1_348_300_000 + i)).collect();
        let mut reported = Vec::new();
        for member in 0..3 {
            let membership = Membership::new(member, 3, 1).unwrap();
            let owned: Vec<u64> = owned_entities(&configs, &membership)
                .map(|c| c.entity_id)
                .collect();
            assert!(owned.len() > 40 && owned.len() < 100, "{}", owned.len());
            reported.extend(owned);
        }
        reported.sort_unstable();
        let all: Vec<u64> = configs.iter().map(|c| c.entity_id).collect();
        assert_eq!(reported, all);
        let alone = Membership::default();
        assert_eq!(owned_entities(&configs, &alone).count(), 200);
    }

    /// The jobs of a standalone NetFlow bot that is member `member` of 3.
    fn jobs_on(member: u32, configs: &[EntityConfig]) -> Vec<collector::JobSpec<NetflowJob>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let context = Context {
            store: collector::Store::open(dir.path(), "state").expect("store"),
            backend: None,
            metrics: collector::metrics::Metrics::new(),
            shutdown: Default::default(),
            cluster: Membership::new(member, 3, 1).expect("membership"),
        };
        let settings = NetflowArgs {
            netflow_port: 0,
            netflow_threads: Some(1),
            netflow_receive_buffer: 1 << 20,
            netflow_max_keys: 1000,
            netflow_no_ipv6: true,
            netflow_minute: 60,
        };
        let bot = NetflowBot::new(settings.config().expect("config"), context).expect("bot");
        bot.jobs(configs)
    }

    #[test]
    fn window_jobs_run_on_every_member_with_its_own_entities() {
        let configs: Vec<EntityConfig> = (0..60).map(|i| config(1_348_300_000 + i)).collect();
        let mut reported = Vec::new();
        for member in 0..3 {
            let jobs = jobs_on(member, &configs);
            assert_eq!(jobs.len(), WINDOWS.len(), "one account, five windows");
            for job in &jobs {
                assert_eq!(job.placement, Placement::EveryMember, "{}", job.id);
                let NetflowJob::Aggregate {
                    entities, window, ..
                } = &job.params
                else {
                    panic!("{} is no window job", job.id);
                };
                if *window == 0 {
                    reported.extend(entities.iter().map(|e| e.entity_id));
                }
            }
        }
        reported.sort_unstable();
        let all: Vec<u64> = configs.iter().map(|c| c.entity_id).collect();
        assert_eq!(reported, all, "each entity in exactly one member's windows");
    }

    #[test]
    fn account_totals_are_recognised() {
        assert!(is_account_total("1min", "netflow.1min.ingress"));
        assert!(is_account_total("24h", "netflow.24h.egress"));
        assert!(!is_account_total("1min", "netflow.1min.ingress.entity.7"));
        assert!(!is_account_total("1min", "netflow.15min.ingress"));
    }
}
