//! `[node]`: who this node is, which cluster it belongs to, and where it may
//! keep state across restarts.

use std::path::PathBuf;

use super::key::{Key, Section, string, text};
use super::{Problem, check_name};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeSection {
    /// After `NodeSection::check`, never empty (the hostname by default).
    pub name: String,
    pub cluster: String,
    /// Where the counter reservations are kept (`core::reserve`): the
    /// written path, else `$STATE_DIRECTORY` (systemd's `StateDirectory=`);
    /// `None`: nothing is ever written.
    pub state_dir: Option<PathBuf>,
}

pub(super) const NAME: Key<NodeSection> = Key::new(
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

const CLUSTER: Key<NodeSection> = Key::new(
    "cluster",
    || text("herd"),
    |n, v| {
        let c = v.as_str().ok_or("must be a string")?;
        check_name(c).map(|_| n.cluster = c.to_owned())
    },
    |n| text(&n.cluster),
);

const STATE_DIR: Key<NodeSection> = Key::new(
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

fn hostname() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    // A hostname may be an FQDN; the first label is what operators call the node.
    host.split('.').next().unwrap_or_default().to_owned()
}
