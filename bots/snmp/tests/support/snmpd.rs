//! A real net-snmp `snmpd` for tests: started on a free loopback port with its own config in a
//! temporary directory, a v2c community and a v3 authPriv user, and a `pass_persist` script serving
//! objects the test controls under `.1.3.6.1.4.1.99999` (values fixed, or counters that grow
//! at a known rate with wall-clock time, so that two polls give a known per-second rate).
//!
//! Shared by `bots/snmp/tests/*` and the end-to-end tests (`tests/tests/snmp.rs` includes this
//! file with `#[path]`). Needs the Debian package `snmpd`.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The community of the v2c (and v1) access.
pub const COMMUNITY: &str = "public";
/// A community that sees only [`PASS_BASE`], so walks there reach the end of the MIB view.
pub const LIMITED_COMMUNITY: &str = "limited";
/// The v3 user: SHA authentication and AES privacy.
pub const V3_USER: &str = "monitor";
pub const V3_AUTH_KEY: &str = "authpass123";
/// A v3 user with MD5 authentication and DES privacy (same passwords).
pub const V3_DES_USER: &str = "legacy";
/// A v3 user with SHA-256 authentication and no privacy (same authentication password).
pub const V3_SHA2_USER: &str = "modern";
pub const V3_PRIV_KEY: &str = "privpass123";
/// Where the pass script serves the test's objects.
pub const PASS_BASE: &str = ".1.3.6.1.4.1.99999";

/// A value served by the pass script.
#[derive(Debug, Clone)]
pub enum PassValue {
    /// Served as given.
    Fixed(String),
    /// `(offset + per_second * seconds since the table was written) mod modulus`, computed at
    /// each request from the clock, so the rate between two polls is `per_second`.
    Rate {
        per_second: u64,
        offset: u64,
        modulus: u64,
    },
}

/// One object of the pass table: OID (under [`PASS_BASE`]), pass type (`counter`,
/// `counter64`, `gauge`, `integer`, `string`, `timeticks`...) and value.
#[derive(Debug, Clone)]
pub struct PassObject {
    pub oid: String,
    pub kind: &'static str,
    pub value: PassValue,
}

impl PassObject {
    pub fn fixed(oid: &str, kind: &'static str, value: &str) -> PassObject {
        PassObject {
            oid: oid.to_string(),
            kind,
            value: PassValue::Fixed(value.to_string()),
        }
    }

    pub fn rate(
        oid: &str,
        kind: &'static str,
        per_second: u64,
        offset: u64,
        modulus: u64,
    ) -> PassObject {
        PassObject {
            oid: oid.to_string(),
            kind,
            value: PassValue::Rate {
                per_second,
                offset,
                modulus,
            },
        }
    }
}

/// A running snmpd; stopped when dropped.
pub struct Snmpd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

const PASS_AWK: &str = r#"
function cmp(a, b,    x, y, n, m, i) {
    n = split(a, x, "."); m = split(b, y, ".")
    for (i = 1; i <= n && i <= m; i++) {
        if (x[i] + 0 < y[i] + 0) return -1
        if (x[i] + 0 > y[i] + 0) return 1
    }
    return (n < m) ? -1 : ((n > m) ? 1 : 0)
}
NR == 1 { start = $1; next }
{
    c = cmp($1, req)
    if ((mode == "-g" && c == 0) || (mode == "-n" && c > 0)) {
        value = $3
        if (value ~ /^rate:/) {
            split(value, r, ":")
            elapsed_ms = now_ms - start
            value = sprintf("%.0f", (r[3] + int(elapsed_ms * r[2] / 1000)) % r[4])
        } else {
            for (i = 4; i <= NF; i++) value = value " " $i
        }
        print $1; print $2; print value
        exit
    }
}
"#;

/// The `pass_persist` protocol on stdin/stdout (plain `pass` output is cached by snmpd, which
/// would freeze the counters), each request answered by `pass.awk` from the table file.
const PASS_PERSIST_SH: &str = r#"#!/bin/sh
while read -r command; do
    case "$command" in
        PING) echo PONG ;;
        get|getnext)
            read -r oid
            mode=-g
            [ "$command" = getnext ] && mode=-n
            now_ms=$(($(date +%s%N) / 1000000))
            answer=$(awk -v mode="$mode" -v req="$oid" -v now_ms="$now_ms" -f @AWK@ @TABLE@)
            if [ -n "$answer" ]; then printf '%s\n' "$answer"; else echo NONE; fi ;;
        set) read -r oid; read -r value; echo not-writable ;;
        *) exit 0 ;;
    esac
done
"#;

fn find_snmpd() -> PathBuf {
    for candidate in ["/usr/sbin/snmpd", "/usr/local/sbin/snmpd", "/sbin/snmpd"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("snmpd")
}

fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port on loopback");
    socket.local_addr().expect("local address").port()
}

fn oid_arcs(oid: &str) -> Vec<u64> {
    oid.trim_start_matches('.')
        .split('.')
        .map(|arc| arc.parse().expect("numeric OID in the pass table"))
        .collect()
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis()
}

impl Snmpd {
    /// Starts snmpd serving `objects` and waits until it answers.
    pub fn start(objects: &[PassObject]) -> Snmpd {
        Snmpd::start_with_config(objects, "")
    }

    /// Like [`Snmpd::start`], with `extra` lines appended to snmpd.conf (e.g. `override OID
    /// unsigned VALUE`, which replaces one of the agent's own objects).
    pub fn start_with_config(objects: &[PassObject], extra: &str) -> Snmpd {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_udp_port();
        let snmpd = Snmpd {
            child: None,
            dir,
            port,
        };
        std::fs::write(snmpd.path("pass.awk"), PASS_AWK).expect("write pass.awk");
        let script = PASS_PERSIST_SH
            .replace("@AWK@", &snmpd.path("pass.awk").display().to_string())
            .replace("@TABLE@", &snmpd.path("table.txt").display().to_string());
        let script_path = snmpd.path("pass.sh");
        std::fs::write(&script_path, script).expect("write pass.sh");
        set_executable(&script_path);
        snmpd.set_objects(objects);
        let config = format!(
            "agentaddress udp:127.0.0.1:{port}\n\
             rocommunity {COMMUNITY} 127.0.0.1\n\
             view passonly included {PASS_BASE}\n\
             rocommunity {LIMITED_COMMUNITY} 127.0.0.1 -V passonly\n\
             createUser {V3_USER} SHA \"{V3_AUTH_KEY}\" AES \"{V3_PRIV_KEY}\"\n\
             rouser {V3_USER} authpriv\n\
             createUser {V3_DES_USER} MD5 \"{V3_AUTH_KEY}\" DES \"{V3_PRIV_KEY}\"\n\
             rouser {V3_DES_USER} authpriv\n\
             createUser {V3_SHA2_USER} SHA-256 \"{V3_AUTH_KEY}\"\n\
             rouser {V3_SHA2_USER} auth\n\
             pass_persist {PASS_BASE} {}\n\
             dontLogTCPWrappersConnects yes\n\
             {extra}\n",
            script_path.display()
        );
        std::fs::write(snmpd.path("snmpd.conf"), config).expect("write snmpd.conf");
        std::fs::create_dir_all(snmpd.path("persist")).expect("persistent dir");
        let mut snmpd = snmpd;
        snmpd.launch();
        snmpd
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces the served objects; takes effect at the next request. Rate counters count
    /// from the moment of this call.
    pub fn set_objects(&self, objects: &[PassObject]) {
        let mut sorted: Vec<&PassObject> = objects.iter().collect();
        sorted.sort_by_key(|o| oid_arcs(&o.oid));
        let mut table = format!("{}\n", now_ms());
        for object in sorted {
            let oid = format!(".{}", object.oid.trim_start_matches('.'));
            let value = match &object.value {
                PassValue::Fixed(text) => text.clone(),
                PassValue::Rate {
                    per_second,
                    offset,
                    modulus,
                } => format!("rate:{per_second}:{offset}:{modulus}"),
            };
            let _ = writeln!(table, "{oid} {} {value}", object.kind);
        }
        let temporary = self.path("table.txt.new");
        std::fs::write(&temporary, table).expect("write table");
        std::fs::rename(&temporary, self.path("table.txt")).expect("install table");
    }

    fn launch(&mut self) {
        let log = self.path("snmpd.log");
        let _ = std::fs::remove_file(&log);
        let child = Command::new(find_snmpd())
            .args(["-f", "-C", "-c"])
            .arg(self.path("snmpd.conf"))
            .arg("-Lf")
            .arg(&log)
            .arg("-p")
            .arg(self.path("snmpd.pid"))
            .env("SNMP_PERSISTENT_DIR", self.path("persist"))
            .env("MIBS", "")
            .env("MIBDIRS", self.path("no-mibs"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start snmpd (apt-get install snmpd)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("NET-SNMP version") {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("snmpd exited with {status}: {text}");
            }
            assert!(Instant::now() < deadline, "snmpd did not start: {text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops and starts snmpd on the same port (its sysUpTime starts again from zero).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Stops snmpd; requests then time out.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The UDP port snmpd listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, as an entity's `details.ipv4`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// snmpd's log, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("snmpd.log")).unwrap_or_default()
    }
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut permissions = std::fs::metadata(path).expect("metadata").permissions();
    permissions.set_mode(0o755);
    std::fs::set_permissions(path, permissions).expect("chmod");
}

/// A UDP port on 127.0.0.1 where nothing answers (bound and never read, so no ICMP either).
pub fn silent_udp_port() -> (UdpSocket, u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port on loopback");
    let port = socket.local_addr().expect("local address").port();
    (socket, port)
}
