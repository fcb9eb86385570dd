//! An interface's speed in bits per second. IF-MIB's ifSpeed is a Gauge32: it saturates at
//! 4294967295 for links of 4.29 Gb/s and more (10G, 25G, 100G, bridges). ifHighSpeed (ifXTable,
//! in Mb/s) covers those; ifSpeed stays exact below (a 1.544 Mb/s T1 has an ifHighSpeed of 2).

use crate::interfaces::InterfaceRow;
use crate::walk::WalkRow;

/// ifHighSpeed of IF-MIB's ifXTable.
pub const IF_HIGH_SPEED: [u32; 11] = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 15];

/// The value ifSpeed is stuck at when the link is faster.
const SATURATED: u64 = u32::MAX as u64;

/// Whether a row's ifSpeed cannot tell its speed: saturated, zero (virtual interfaces, some
/// agents for fast links) or not a number.
pub fn needs_high_speed(row: &InterfaceRow) -> bool {
    !matches!(row.speed.trim().parse::<u64>(), Ok(speed) if speed > 0 && speed < SATURATED)
}

/// Replaces the speed of every row whose ifSpeed cannot tell by ifHighSpeed x 10^6, when the
/// agent has an ifHighSpeed above zero for that interface (joined by index).
pub fn use_high_speeds(rows: &mut [InterfaceRow], high_speeds: &[WalkRow]) {
    for row in rows.iter_mut().filter(|row| needs_high_speed(row)) {
        let high = high_speeds
            .iter()
            .find(|h| h.index == row.index)
            .and_then(|h| h.value.as_number())
            .filter(|mbps| *mbps >= 1.0 && *mbps <= f64::from(u32::MAX));
        if let Some(mbps) = high {
            row.speed = (mbps as u64 * 1_000_000).to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk::SnmpValue;

    fn row(index: &str, speed: &str) -> InterfaceRow {
        InterfaceRow {
            index: index.into(),
            name: format!("if{index}"),
            speed: speed.into(),
        }
    }

    fn high(index: &str, mbps: u64) -> WalkRow {
        WalkRow {
            index: index.into(),
            value: SnmpValue::Unsigned(mbps),
        }
    }

    #[test]
    fn high_speed_only_where_if_speed_cannot_tell() {
        let mut rows = vec![
            row("1", "4294967295"),
            row("2", "1544000"),
            row("3", "0"),
            row("4", "4294967295"),
            row("5", "0"),
        ];
        let high_speeds = [
            high("1", 100_000),
            high("2", 2),
            high("3", 25_000),
            high("5", 0),
        ];
        use_high_speeds(&mut rows, &high_speeds);
        let speeds: Vec<&str> = rows.iter().map(|r| r.speed.as_str()).collect();
        assert_eq!(
            speeds,
            ["100000000000", "1544000", "25000000000", "4294967295", "0"]
        );
    }
}
