//! `[node]`: who this node is, which cluster it belongs to, and where it may
//! keep state across restarts.

use std::path::PathBuf;

use super::key::{Key, Section, string, text};
use super::{Problem, check_name};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeSection {
    /// After `NodeSection::check`, never empty (the hostname by default).
    pub name: String,
    /// `name` is the hostname because the file left it empty.
    pub name_from_hostname: bool,
    pub cluster: String,
    /// Where the counter reservations are kept (`core::reserve`): the
    /// written path, else `$STATE_DIRECTORY` (systemd's `StateDirectory=`);
    /// `None`: nothing is ever written.
    pub state_dir: Option<PathBuf>,
}

pub(super) const NAME: Key<NodeSection> = Key::restart(
    "name",
    || text(""),
    |n, v| {
        let name = string(v)?;
        if !name.is_empty() {
            check_name(&name)?;
        }
        n.name = name;
        Ok(())
    },
    |n| text(&n.name),
);

const CLUSTER: Key<NodeSection> = Key::restart(
    "cluster",
    || text("herd"),
    |n, v| {
        let c = v.as_str().ok_or("must be a string")?;
        check_name(c).map(|_| n.cluster = c.to_owned())
    },
    |n| text(&n.cluster),
);

const STATE_DIR: Key<NodeSection> = Key::restart(
    "state_dir",
    || text(""),
    |n, v| {
        let dir = string(v)?;
        if !dir.is_empty() && !dir.starts_with('/') {
            return Err("must be an absolute path, or \"\" for $STATE_DIRECTORY".into());
        }
        n.state_dir = (!dir.is_empty()).then(|| PathBuf::from(dir));
        Ok(())
    },
    |n| text(n.state_dir.as_ref().map(|p| p.display().to_string()).unwrap_or_default()),
);

impl Section for NodeSection {
    const NAME: &'static str = "node";
    const KEYS: &'static [Key<Self>] = &[NAME, CLUSTER, STATE_DIR];
}

impl NodeSection {
    /// `name = ""` is this machine's hostname, which must be a usable name.
    /// A name that was written but refused is not replaced by it.
    pub(super) fn check(&mut self, problems: &mut Vec<Problem>) {
        if self.state_dir.is_none() {
            // systemd's StateDirectory= (a colon-separated list: the first).
            self.state_dir = std::env::var("STATE_DIRECTORY")
                .ok()
                .and_then(|v| v.split(':').next().map(str::to_owned))
                .filter(|d| d.starts_with('/'))
                .map(PathBuf::from);
        }
        if !self.name.is_empty() || problems.iter().any(|p| p.path == NAME.path()) {
            return;
        }
        self.name = hostname();
        self.name_from_hostname = true;
        if let Err(allowed) = check_name(&self.name) {
            problems.push(Problem {
                path: NAME.path(),
                value: String::new(),
                allowed: format!(
                    "the hostname {:?} is not a usable node name ({allowed}); set [node] {}",
                    self.name, NAME.name
                ),
            });
        }
    }
}

/// How an operator gives a node a name of its own (said wherever a name
/// shared by two nodes, or likely to be, is reported).
pub const RENAME_HINT: &str = "set [node] name in /etc/herd/herd.toml, or rename the host \
     (sudo hostnamectl set-hostname <new name>), then restart herd (sudo systemctl restart herd)";

/// The name every Raspberry Pi OS image has until someone renames it.
pub const PI_OS_HOSTNAME: &str = "raspberrypi";

impl NodeSection {
    /// A warning when the node's name is the Raspberry Pi OS default: valid,
    /// but every Pi not yet renamed has it, and two nodes with one name
    /// refuse each other. `herd check` prints it, `herd run` logs it.
    pub fn name_warning(&self) -> Option<String> {
        name_warning(&self.name, self.name_from_hostname)
    }
}

/// [`NodeSection::name_warning`] for `name`, taken from the hostname or not.
pub fn name_warning(name: &str, from_hostname: bool) -> Option<String> {
    if !name.eq_ignore_ascii_case(PI_OS_HOSTNAME) {
        return None;
    }
    let origin = if from_hostname { "the hostname (no [node] name is set)" } else { "[node] name" };
    Some(format!(
        "the node name {name:?}, from {origin}, is the Raspberry Pi OS default: every Pi not yet renamed \
         has it, and nodes that share a name refuse each other (none of them joins the cluster). \
         Give each Pi its own name: {RENAME_HINT}"
    ))
}

fn hostname() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    // A hostname may be an FQDN; the first label is what operators call the node.
    host.split('.').next().unwrap_or_default().to_owned()
}
