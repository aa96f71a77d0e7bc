//! `[status]`: the local status endpoint.

use std::net::SocketAddr;

use super::key::{Key, Section, text};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusSection {
    /// `None` when `listen = ""` (endpoint disabled).
    pub listen: Option<SocketAddr>,
}

/// `[status] listen`'s default: the endpoint `herd status` asks when no config says otherwise.
pub const DEFAULT_STATUS_LISTEN: &str = "127.0.0.1:45894";

const LISTEN: Key<StatusSection> = Key::restart(
    "listen",
    || text(DEFAULT_STATUS_LISTEN),
    |s, v| {
        s.listen = match v.as_str() {
            Some("") => None,
            Some(a) => Some(a.parse::<SocketAddr>().map_err(|_| {
                "must be \"ip:port\" such as \"127.0.0.1:45894\", or \"\" to disable".to_owned()
            })?),
            None => return Err("must be a string".into()),
        };
        Ok(())
    },
    |s| text(s.listen.map(|a| a.to_string()).unwrap_or_default()),
);

impl Section for StatusSection {
    const NAME: &'static str = "status";
    const KEYS: &'static [Key<Self>] = &[LISTEN];
}
