//! root: the filesystem mounted on `/`: whether the filesystem itself is read-only (its options in
//! `proc/self/mountinfo`) and how full it is (statvfs(3), not asked of a network filesystem).

use std::io;

use super::read::{Fault, Reader, read_text};

/// What `proc/self/mountinfo` says of `/`.
#[derive(Debug)]
pub(super) struct RootMount {
    fstype: String,
    /// The filesystem's own options say `ro`.
    pub(super) readonly: bool,
}

/// Filesystem types whose statvfs(3) waits on a server.
const NETWORK_FILESYSTEMS: [&str; 5] = ["nfs", "cifs", "smb", "9p", "fuse.sshfs"];

/// The filesystem mounted on `/` as this process sees it: the last `/`
/// line of `proc/self/mountinfo`, read for the filesystem's own (super
/// block) options, not the mount's. Under systemd's ProtectSystem=strict
/// the mount is read-only for herd alone while the card is fine; when
/// the kernel remounts a failing card, the filesystem itself turns `ro`.
pub(super) fn mount(reader: &mut Reader) -> Option<RootMount> {
    let file = reader.proc("self/mountinfo");
    let root = read_text(&file).and_then(|text| {
        text.lines()
            .rev()
            .find_map(parse_root_mountinfo)
            .ok_or(Fault::Unavailable("no mount of / listed".to_owned()))
    });
    reader.check_file(&file, root)
}

/// statvfs(3) of `/`, unless it is a network filesystem: there statvfs
/// waits on the server, and it would stall the event loop (a Pi that
/// boots from NFS reports no fill).
pub(super) fn used_pct(reader: &mut Reader, root: Option<&RootMount>) -> Option<f64> {
    let used = match root.map(|r| r.fstype.as_str()) {
        Some(t) if NETWORK_FILESYSTEMS.iter().any(|n| t.starts_with(n)) => {
            Err(Fault::Unavailable(format!("/ is {t}, a network filesystem: not asked")))
        }
        _ => statvfs_used_pct(),
    };
    reader.check("statvfs /", used)
}

/// A mountinfo line of the mount on `/`: `ID PARENT MAJ:MIN ROOT MOUNTPOINT
/// OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS` (proc(5)).
fn parse_root_mountinfo(line: &str) -> Option<RootMount> {
    let (mount, fs) = line.split_once(" - ")?;
    if mount.split_whitespace().nth(4)? != "/" {
        return None;
    }
    let mut fs = fs.split_whitespace();
    let fstype = fs.next()?.to_owned();
    let super_options = fs.nth(1)?;
    Some(RootMount { fstype, readonly: super_options.split(',').any(|o| o == "ro") })
}

/// statvfs(3) of `/`: used blocks over used plus those available to users, as df(1) shows it.
fn statvfs_used_pct() -> Result<f64, Fault> {
    // SAFETY: statvfs is plain data; all-zero is valid.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid, writable statvfs.
    if unsafe { libc::statvfs(c"/".as_ptr(), &mut st) } != 0 {
        return Err(Fault::Unreadable(io::Error::last_os_error()));
    }
    let used = (st.f_blocks as u64).saturating_sub(st.f_bfree as u64);
    let usable = used + st.f_bavail as u64;
    if usable == 0 {
        return Err(Fault::Unavailable("statvfs reports no blocks".to_owned()));
    }
    Ok(used as f64 / usable as f64 * 100.0)
}
