//! throttle: the Raspberry Pi firmware's throttled word (`get_throttled` under the sysfs root, what
//! `vcgencmd get_throttled` prints): its flags by name, and which live ones are newly set.

use super::read::Reader;

/// The Raspberry Pi firmware's throttled word (`vcgencmd get_throttled`): bits 0-3 are live, bits
/// 16-19 the same conditions, sticky since boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle(pub u32);

/// Metric suffix and bit of each flag: the 4 live ones, then the 4 sticky ones.
const THROTTLE_FLAGS: [(&str, u32); 8] = [
    ("under_voltage", 0),
    ("freq_capped", 1),
    ("throttled", 2),
    ("soft_temp_limit", 3),
    ("under_voltage_occurred", 16),
    ("freq_capped_occurred", 17),
    ("throttled_occurred", 18),
    ("soft_temp_limit_occurred", 19),
];

const LIVE_BITS: u32 = 0xf;

impl Throttle {
    /// (metric suffix, set?) for the 4 live bits then the 4 sticky ones, in this order:
    /// ("under_voltage", bit0), ("freq_capped", bit1), ("throttled", bit2), ("soft_temp_limit", bit3),
    /// ("under_voltage_occurred", bit16), ("freq_capped_occurred", bit17), ("throttled_occurred", bit18),
    /// ("soft_temp_limit_occurred", bit19)
    pub fn flags(self) -> [(&'static str, bool); 8] {
        THROTTLE_FLAGS.map(|(name, bit)| (name, self.0 & (1 << bit) != 0))
    }

    /// Names of live bits (0-3) set now but not in `previous` (None = none set before), in bit order.
    pub fn newly_set(self, previous: Option<Throttle>) -> Vec<&'static str> {
        let before = previous.map_or(0, |p| p.0);
        let new = self.0 & !before & LIVE_BITS;
        THROTTLE_FLAGS.iter().filter(|(_, bit)| new & (1 << bit) != 0).map(|(name, _)| *name).collect()
    }

    /// The live bits (0-3), as the node's health gossips them.
    pub(super) fn live(self) -> u8 {
        (self.0 & LIVE_BITS) as u8
    }
}

/// The word from the firmware's `get_throttled` under the sysfs root; `None` (logged) where there
/// is none (not a Pi, or a kernel that no longer has it) or it does not parse.
pub(super) fn read(reader: &mut Reader) -> Option<Throttle> {
    let file = reader.sys("devices/platform/soc/soc:firmware/get_throttled");
    reader.value(&file, parse)
}

/// The firmware prints the word in hex, with or without "0x" ("0x50005", "50005", "0").
fn parse(text: &str) -> Option<Throttle> {
    let hex = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
    u32::from_str_radix(hex, 16).ok().map(Throttle)
}
