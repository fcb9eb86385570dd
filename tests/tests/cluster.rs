//! Replicas that split the jobs (`CLUSTER_MEMBERS`, `CLUSTER_MEMBER`): three members of the real
//! `pingbot` (300 loopback hosts) and three of the real `snmpbot` (200 devices on the real snmpd
//! of the SNMP tests) against the test backend. Every entity's values must arrive once per
//! interval, from exactly the member rendezvous hashing names, none missing; then one member is
//! stopped, the other two restarted with `CLUSTER_MEMBERS=2`, and the same holds again.
//!
//! Which member ran a job is read from the task records each member sends under its own
//! `TASK_RECORDS_PREFIX` (`cluster.m<member>.job.<job>.success`); the members are otherwise
//! configured identically, with the member taken from a StatefulSet-style name (`pingbot-2`).
//! Needs root (ICMP), and the Debian package `snmpd`.

#[path = "../../bots/snmp/tests/support/snmpd.rs"]
mod snmpd;

use collector::cluster::owners;
use e2e::process::{build, BotProcess};
use e2e::{Fixture, Id, StoredValue, TestBackend};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Every sensor's interval, seconds.
const INTERVAL: f64 = 4.0;
/// Observed intervals per phase.
const WINDOW_INTERVALS: f64 = 3.0;
/// The longest stretch without a value of an entity (window edges included): a missed firing
/// makes one of about two intervals. A POST can arrive seconds late on 2 shared cores (up to 4 s
/// measured under a load average of 10), so a shorter bound would fail on timing alone.
const LONGEST_STRETCH: f64 = 2.0 * INTERVAL - 1.0;
const START_TIMEOUT: Duration = Duration::from_secs(40);

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One bot's members: the same settings except `CLUSTER_MEMBER` and the task-record prefix.
struct Members {
    binary: PathBuf,
    name: &'static str,
    env: Vec<(String, String)>,
    running: BTreeMap<u32, (BotProcess, u16)>,
}

impl Members {
    fn new(binary: PathBuf, name: &'static str, backend: &TestBackend, bot: Id) -> Members {
        let mut env = vec![
            ("BACKEND_URL".to_string(), backend.url()),
            ("BOT_TOKEN".to_string(), backend.token(bot)),
            ("JOBS_REFRESH_INTERVAL".to_string(), "60".to_string()),
        ];
        env.push(("SHUTDOWN_GRACE".into(), "3".into()));
        Members {
            binary,
            name,
            env,
            running: BTreeMap::new(),
        }
    }

    fn with(mut self, name: &str, value: &str) -> Members {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Starts member `member` of `members`, on its previous data directory if it had one.
    fn start(&mut self, member: u32, members: u32, data_dir: Option<tempfile::TempDir>) {
        let port = free_port();
        let mut env = self.env.clone();
        env.extend([
            ("CLUSTER_MEMBERS".to_string(), members.to_string()),
            (
                "CLUSTER_MEMBER".to_string(),
                format!("{}-{member}", self.name),
            ),
            (
                "TASK_RECORDS_PREFIX".to_string(),
                format!("cluster.m{member}"),
            ),
            ("METRICS_ADDRESS".to_string(), format!("127.0.0.1:{port}")),
        ]);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let data_dir = data_dir.unwrap_or_else(|| tempfile::tempdir().expect("temp dir"));
        let process = BotProcess::start_in(&self.binary, &[], &env, data_dir);
        self.running.insert(member, (process, port));
    }

    /// Stops every member (SIGTERM) and hands back their data directories.
    async fn stop_all(&mut self) -> BTreeMap<u32, tempfile::TempDir> {
        let mut dirs = BTreeMap::new();
        for (member, (mut process, _)) in std::mem::take(&mut self.running) {
            let status = process.terminate(Duration::from_secs(15)).await;
            assert!(
                status.success(),
                "{} member {member}: {status}\n{}",
                self.name,
                process.stderr()
            );
            let placeholder = tempfile::tempdir().expect("temp dir");
            dirs.insert(
                member,
                std::mem::replace(&mut process.data_dir, placeholder),
            );
        }
        dirs
    }

    /// `collector_cluster_*` gauges of every running member, by member.
    async fn cluster_gauges(&self) -> BTreeMap<u32, BTreeMap<String, f64>> {
        let mut all = BTreeMap::new();
        for (member, (_, port)) in &self.running {
            let page = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
                .await
                .expect("GET /metrics")
                .text()
                .await
                .expect("metrics page");
            let gauges = page
                .lines()
                .filter(|l| l.starts_with("collector_cluster_"))
                .filter_map(|l| {
                    let (name, value) = l.split_once(' ')?;
                    Some((name.to_string(), value.trim().parse().ok()?))
                })
                .collect();
            all.insert(*member, gauges);
        }
        all
    }

    fn logs(&self) -> String {
        self.running
            .iter()
            .map(|(m, (p, _))| format!("--- member {m}:\n{}", p.stderr()))
            .collect()
    }
}

/// The entities of a cluster test and what each posts every interval.
struct Population {
    /// (account, entity)
    entities: Vec<(Id, Id)>,
    /// The path tail checked for "once per interval", e.g. `ping.success`.
    value: &'static str,
    /// Job id suffixes of each entity: `""` for `"{entity}"`, `"-interfaces"`...
    jobs: &'static [&'static str],
}

impl Population {
    fn accounts(&self) -> BTreeSet<Id> {
        self.entities.iter().map(|(a, _)| *a).collect()
    }

    fn values(&self, backend: &TestBackend) -> Vec<StoredValue> {
        self.accounts()
            .into_iter()
            .flat_map(|a| backend.values(a))
            .collect()
    }

    /// Waits until every entity has posted a value after `since`.
    async fn wait_covered(&self, backend: &TestBackend, members: &Members, since: f64) {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let seen: BTreeSet<String> = self
                .values(backend)
                .into_iter()
                .filter(|v| v.t > since)
                .map(|v| v.path)
                .collect();
            let missing = self
                .entities
                .iter()
                .filter(|(_, e)| !seen.contains(&format!("entity.{e}.{}", self.value)))
                .count();
            if missing == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{missing} entities still without values after {START_TIMEOUT:?}\n{}",
                members.logs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Everything wrong with "once per interval, from exactly its owner" in `[start, end]`;
    /// task records are read from `phase_start` on (the slower jobs fire less often).
    fn problems(
        &self,
        values: &[StoredValue],
        members: u32,
        phase_start: f64,
        start: f64,
        end: f64,
    ) -> Vec<String> {
        let mut times: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let mut ran_by: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        for v in values {
            if v.t >= start && v.t <= end {
                times.entry(v.path.as_str()).or_default().push(v.t);
            }
            if v.t >= phase_start && v.t <= end {
                if let Some((member, job)) = task_record(&v.path) {
                    ran_by.entry(job.to_string()).or_default().insert(member);
                }
            }
        }
        let mut problems = Vec::new();
        for (_, entity) in &self.entities {
            let owner = owners(&entity.to_string(), members, 1)[0];
            for suffix in self.jobs {
                let job = format!("{entity}{suffix}");
                let ran: Vec<u32> = ran_by.get(&job).into_iter().flatten().copied().collect();
                if ran != [owner] {
                    problems.push(format!(
                        "job {job}: run by members {ran:?}, owner is {owner}"
                    ));
                }
            }
            let path = format!("entity.{entity}.{}", self.value);
            let mut ts = times.get(path.as_str()).cloned().unwrap_or_default();
            ts.sort_by(f64::total_cmp);
            problems.extend(gap_problems(&path, &ts, start, end));
        }
        problems
    }
}

/// `cluster.m<member>.job.<job>.success` -> (member, job).
fn task_record(path: &str) -> Option<(u32, &str)> {
    let rest = path.strip_prefix("cluster.m")?;
    let (member, rest) = rest.split_once(".job.")?;
    Some((member.parse().ok()?, rest.strip_suffix(".success")?))
}

/// Values of one path must come once per interval: no stretch of about two intervals without
/// one (a missed firing), no two values of one firing, as many values as intervals give or
/// take one. (A second poller is caught exactly, whatever the timing, by the task records.)
fn gap_problems(path: &str, ts: &[f64], start: f64, end: f64) -> Vec<String> {
    let (Some(first), Some(last)) = (ts.first(), ts.last()) else {
        return vec![format!("{path}: no value in the window")];
    };
    let mut problems = Vec::new();
    if first - start > LONGEST_STRETCH || end - last > LONGEST_STRETCH {
        problems.push(format!(
            "{path}: values only from {:.1} to {:.1} s of the window",
            first - start,
            last - start
        ));
    }
    let firings = (end - start) / INTERVAL;
    let count = ts.len() as f64;
    if count < firings.floor() - 1.0 || count > firings.ceil() + 1.0 {
        problems.push(format!(
            "{path}: {} values in {:.1} s",
            ts.len(),
            end - start
        ));
    }
    for pair in ts.windows(2) {
        let gap = pair[1] - pair[0];
        if !(0.5..=LONGEST_STRETCH).contains(&gap) {
            problems.push(format!(
                "{path}: {gap:.2} s between two values (interval {INTERVAL} s): {ts:?}"
            ));
        }
    }
    problems
}

/// Observes one window and asserts the split, then checks what `/metrics` says of it.
async fn assert_exactly_once(
    population: &Population,
    backend: &TestBackend,
    members: &Members,
    count: u32,
    phase_start: f64,
) {
    population.wait_covered(backend, members, phase_start).await;
    let start = now();
    tokio::time::sleep(Duration::from_secs_f64(INTERVAL * WINDOW_INTERVALS)).await;
    let end = now();
    let problems = population.problems(&population.values(backend), count, phase_start, start, end);
    assert!(
        problems.is_empty(),
        "{} of {} entities x {} members: {} problems, first ones:\n{}\n{}",
        population.entities.len(),
        members.name,
        count,
        problems.len(),
        problems
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        members.logs()
    );

    let jobs = population.entities.len() * population.jobs.len();
    let gauges = members.cluster_gauges().await;
    let mut owned_total = 0.0;
    for (member, gauges) in &gauges {
        let owned = gauges
            .get("collector_cluster_jobs_owned")
            .copied()
            .unwrap_or(-1.0);
        let skipped = gauges
            .get("collector_cluster_jobs_skipped")
            .copied()
            .unwrap_or(-1.0);
        let predicted = population
            .entities
            .iter()
            .filter(|(_, e)| owners(&e.to_string(), count, 1)[0] == *member)
            .count()
            * population.jobs.len();
        assert_eq!(owned, predicted as f64, "member {member}: {gauges:?}");
        assert_eq!(owned + skipped, jobs as f64, "member {member}: {gauges:?}");
        assert_eq!(
            gauges.get("collector_cluster_member"),
            Some(&f64::from(*member))
        );
        assert_eq!(
            gauges.get("collector_cluster_members"),
            Some(&f64::from(count))
        );
        owned_total += owned;
    }
    assert_eq!(owned_total, jobs as f64);
    println!(
        "{}: {} entities on {count} members, owned jobs {:?}: every entity once per {INTERVAL} s over {:.1} s",
        members.name,
        population.entities.len(),
        gauges.values().map(|g| g.get("collector_cluster_jobs_owned").copied().unwrap_or(0.0)).collect::<Vec<_>>(),
        end - start
    );
}

/// Three members, then two: the whole scenario for one bot.
async fn three_then_two(population: &Population, backend: &TestBackend, mut members: Members) {
    let phase_start = now();
    for member in 0..3 {
        members.start(member, 3, None);
    }
    assert_exactly_once(population, backend, &members, 3, phase_start).await;

    // Member 2 goes away for good; 0 and 1 restart with N=2 on their data directories.
    let mut dirs = members.stop_all().await;
    let restart = now();
    for member in 0..2 {
        members.start(member, 2, dirs.remove(&member));
    }
    let moved = population
        .entities
        .iter()
        .filter(|(_, e)| owners(&e.to_string(), 3, 1) != owners(&e.to_string(), 2, 1))
        .count();
    let of_member_2 = population
        .entities
        .iter()
        .filter(|(_, e)| owners(&e.to_string(), 3, 1) == [2])
        .count();
    assert_eq!(
        moved, of_member_2,
        "only the stopped member's entities move"
    );
    assert_exactly_once(population, backend, &members, 2, restart).await;
    members.stop_all().await;
}

const PING_BOT: Id = 1_620_000_012;
const SNMP_BOT: Id = 1_620_000_021;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_members_split_300_hosts_exactly_once() {
    let binary = build("pingbot", "--bin", "pingbot");
    let mut fixture = Fixture::new();
    fixture.systemwide_bot(PING_BOT, "ping");
    let mut entities = Vec::new();
    for a in 0..2i64 {
        let account = 1_409_000_000 + a;
        let (credential, sensor) = (731_000_000 + a, 842_000_000 + a);
        fixture.account(account, &format!("Ping account {a}"));
        let details =
            json!({"n_packets": "1", "sleep_packets": "0", "timeout": "1.0", "retry": "0"});
        fixture.credential(account, credential, "ping", details);
        fixture.sensor(account, sensor, "ping", Some(60), json!({}));
        for d in 0..150i64 {
            let entity = 1_348_000_000 + a * 1000 + d;
            fixture.device(
                account,
                entity,
                &format!("host-{a}-{d}"),
                &format!("127.10.{a}.{}", d + 1),
            );
            fixture.bind(
                entity,
                "ping",
                credential,
                &[(sensor, Some(INTERVAL as i64))],
                PING_BOT,
            );
            entities.push((account, entity));
        }
    }
    let backend = TestBackend::start(fixture).await;
    let population = Population {
        entities,
        value: "ping.success",
        jobs: &[""],
    };
    let members = Members::new(binary, "pingbot", &backend, PING_BOT);
    three_then_two(&population, &backend, members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snmp_members_split_200_devices_and_their_interface_syncs() {
    let binary = build("snmpbot", "--bin", "snmpbot");
    let agent = snmpd::Snmpd::start(&[]);
    let mut fixture = Fixture::new();
    fixture.systemwide_bot(SNMP_BOT, "snmp");
    let mut entities = Vec::new();
    for a in 0..4i64 {
        let account = 1_409_100_000 + a;
        let (credential, sensor) = (731_100_000 + a, 842_100_000 + a);
        fixture.account(account, &format!("SNMP account {a}"));
        let details = json!({"version": "snmpv2c", "snmpv12_community": snmpd::COMMUNITY});
        fixture.credential(account, credential, "snmp", details);
        fixture.sensor(
            account,
            sensor,
            "snmp",
            Some(60),
            e2e::default_sensor_details("snmp"),
        );
        for d in 0..50i64 {
            let entity = 1_348_100_000 + a * 1000 + d;
            fixture.device(
                account,
                entity,
                &format!("router-{a}-{d}"),
                &agent.address(),
            );
            fixture.bind(
                entity,
                "snmp",
                credential,
                &[(sensor, Some(INTERVAL as i64))],
                SNMP_BOT,
            );
            entities.push((account, entity));
        }
    }
    let backend = TestBackend::start(fixture).await;
    let population = Population {
        entities,
        value: "snmp.sysuptime",
        jobs: &["", "-interfaces"],
    };
    let members = Members::new(binary, "snmpbot", &backend, SNMP_BOT)
        .with("SNMP_TIMEOUT", "1")
        .with("SNMP_RETRIES", "1")
        .with(
            "SNMP_INTERFACE_INTERVAL",
            &format!("{}", 2 * INTERVAL as u64),
        );
    three_then_two(&population, &backend, members).await;
    let interfaces = backend
        .fixture()
        .entities
        .values()
        .filter(|e| e.entity_type == "interface")
        .count();
    assert!(
        interfaces >= population.entities.len(),
        "{interfaces} interface entities"
    );
}

#[tokio::test]
async fn a_member_number_out_of_range_stops_the_bot_naming_the_setting() {
    let binary = build("pingbot", "--bin", "pingbot");
    for (member, expected) in [
        ("pingbot-3", "CLUSTER_MEMBER 3 is out of range"),
        ("pingbot", "CLUSTER_MEMBER \"pingbot\" has no member number"),
    ] {
        let env = [
            ("BACKEND_URL", "http://127.0.0.1:9/api"),
            ("BOT_TOKEN", "00000000-0000-4000-8000-000000000001"),
            ("CLUSTER_MEMBERS", "3"),
            ("CLUSTER_MEMBER", member),
        ];
        let mut bot = BotProcess::start(&binary, &[], &env);
        let status = bot.wait_exit(Duration::from_secs(10)).await;
        assert_eq!(status.code(), Some(2), "{}", bot.stderr());
        let log = bot.stderr();
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(log.starts_with(&format!("error: {expected}")), "{log}");
    }
}
