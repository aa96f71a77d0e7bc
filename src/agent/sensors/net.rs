//! net: the gossip interface's state: which interface it is (configured, the owner of
//! `multicast_if`, or the default route's from `proc/net/route`), and its link state, speed,
//! duplex, flaps, errors and drops (`class/net/<if>` under the sysfs root) and Wi-Fi signal
//! (`proc/net/wireless`).

use std::fs;
use std::net::{IpAddr, Ipv4Addr};

use super::read::{Fault, Reader, read_text};

/// The gossip interface's state. Only built when its `operstate` and both error counters read well.
#[derive(Clone, Debug, PartialEq)]
pub struct NetState {
    pub interface: String,
    /// `operstate` is "up"; any other state ("down", "dormant", "unknown"...) is false.
    pub up: bool,
    pub rx_errors: u64,
    pub tx_errors: u64,
    /// The "level" column of the interface's line in `proc/net/wireless`; `None` when it has no line
    /// there (a wired interface).
    pub wifi_signal_dbm: Option<f64>,
    /// Negotiated speed (`speed`, Mbit/s); `None` where the driver has none (Wi-Fi, a link that is
    /// down: the kernel then answers -1 or an error).
    pub speed_mbps: Option<f64>,
    /// `duplex` is "full"; `None` when it is "unknown" or missing.
    pub full_duplex: Option<bool>,
    /// Link flaps since boot (`carrier_changes`: every up and every down counts one).
    pub carrier_changes: Option<u64>,
    pub rx_dropped: Option<u64>,
}

/// The state of the gossip interface (see [`gossip_interface`]); `None` when it cannot be found or
/// its `operstate` or an error counter does not read well.
pub(super) fn read(
    reader: &mut Reader,
    configured: Option<&str>,
    multicast_if: Ipv4Addr,
) -> Option<NetState> {
    let interface = gossip_interface(reader, configured, multicast_if)?;
    let dir = reader.sys(&format!("class/net/{interface}"));
    let exists = fs::metadata(&dir).map_err(|_| Fault::Unavailable("no such interface".to_owned()));
    reader.check_file(&dir, exists)?;
    let up = reader.value(&dir.join("operstate"), |s| Some(s == "up"))?;
    let rx_errors = reader.value(&dir.join("statistics/rx_errors"), |s| s.parse().ok());
    let tx_errors = reader.value(&dir.join("statistics/tx_errors"), |s| s.parse().ok());
    let wireless = reader.proc("net/wireless");
    let wifi_signal_dbm = reader.check_file(&wireless, read_text(&wireless)).and_then(|text| {
        let level = wireless_level(&text, &interface)?;
        let key = format!("{} ({interface} level)", wireless.display());
        reader.check(&key, parse_dbm(level))
    });
    let (rx_errors, tx_errors) = (rx_errors?, tx_errors?);
    // A link that is down (or Wi-Fi) has no speed: the kernel answers -1, or refuses the read.
    let speed_mbps = reader.value(&dir.join("speed"), |s| {
        s.parse::<i64>().ok().map(|v| if v > 0 { Some(v as f64) } else { None })
    });
    let full_duplex = reader.value(&dir.join("duplex"), |s| match s {
        "full" => Some(Some(true)),
        "half" => Some(Some(false)),
        "unknown" => Some(None),
        _ => None,
    });
    let carrier_changes = reader.value(&dir.join("carrier_changes"), |s| s.parse().ok());
    let rx_dropped = reader.value(&dir.join("statistics/rx_dropped"), |s| s.parse().ok());
    Some(NetState {
        interface,
        up,
        rx_errors,
        tx_errors,
        wifi_signal_dbm,
        speed_mbps: speed_mbps.flatten(),
        full_duplex: full_duplex.flatten(),
        carrier_changes,
        rx_dropped,
    })
}

/// The configured interface, else the one that has `multicast_if`, else the default route's. A name
/// that is not a plain path component is refused, so it cannot lead outside `class/net`.
fn gossip_interface(reader: &mut Reader, configured: Option<&str>, multicast_if: Ipv4Addr) -> Option<String> {
    let name = if let Some(name) = configured {
        Some(name.to_owned())
    } else if !multicast_if.is_unspecified() {
        let wanted = IpAddr::V4(multicast_if);
        let owner = if_addrs::get_if_addrs().map_err(Fault::Unreadable).and_then(|interfaces| {
            let owner = interfaces.into_iter().find(|i| i.ip() == wanted).map(|i| i.name);
            owner.ok_or_else(|| Fault::Unavailable("no interface has this address".to_owned()))
        });
        reader.check(&format!("getifaddrs ({wanted})"), owner)
    } else {
        let route = reader.proc("net/route");
        let default = read_text(&route)
            .and_then(|text| default_route(&text).ok_or(Fault::Unavailable("no default route".to_owned())));
        reader.check_file(&route, default)
    }?;
    let plain = !name.is_empty() && !name.contains('/') && name != "." && name != "..";
    let name = if plain { Ok(name) } else { Err(Fault::Garbled(name)) };
    reader.check("gossip interface name", name)
}

/// The interface of the default route in `/proc/net/route` (destination and mask 0, flag RTF_UP) with
/// the lowest metric, as the kernel picks it; the first listed on a tie.
fn default_route(text: &str) -> Option<String> {
    const RTF_UP: u16 = 0x1;
    text.lines()
        .skip(1)
        .filter_map(|line| {
            // Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [iface, destination, _, flags, _, _, metric, mask, ..] = fields[..] else {
                return None;
            };
            let up = u16::from_str_radix(flags, 16).ok()? & RTF_UP != 0;
            let default = destination == "00000000" && mask == "00000000" && up;
            default.then_some((metric.parse::<u32>().ok()?, iface))
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, iface)| iface.to_owned())
}

/// The "level" field of `interface`'s line in `/proc/net/wireless` ("wlan0: 0000 70. -40. -256 ..."),
/// `None` when the interface has no line.
fn wireless_level<'a>(text: &'a str, interface: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (name, fields) = line.split_once(':')?;
        // status, link quality, then level
        (name.trim() == interface).then(|| fields.split_whitespace().nth(2).unwrap_or(""))
    })
}

/// A level such as "-52." (the kernel prints a trailing dot) in dBm.
fn parse_dbm(level: &str) -> Result<f64, Fault> {
    match level.parse::<f64>() {
        Ok(dbm) if dbm.is_finite() => Ok(dbm),
        _ => Err(Fault::Garbled(level.to_owned())),
    }
}
