//! Dropping root after start: once the listeners and the control socket
//! are bound, the whole process (every thread: glibc applies `setuid` to
//! all of them) becomes an unprivileged user, with that user's group and
//! no supplementary groups. What it still needs keeps working: the bound
//! sockets, the rings already set up, and reading certificate files the
//! user can read.

use std::io;

/// A user to run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// Looks `name` (or a numeric uid) up in `/etc/passwd`: its uid and
/// primary group.
pub fn lookup_user(name: &str) -> io::Result<RunAs> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let (user, uid, gid) = (f.first()?, f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?);
            (*user == name || name.parse::<u32>() == Ok(uid)).then_some(RunAs { uid, gid })
        })
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no user {name:?} in /etc/passwd"),
            )
        })
}

/// Whether the process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Becomes `to`: supplementary groups cleared, then the group, then the
/// user (in that order: after `setuid` the others are no longer allowed).
/// Checks afterwards that root cannot be regained.
pub fn drop_to(to: RunAs) -> io::Result<()> {
    let check = |r: libc::c_int| {
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SAFETY: a null list with length 0 is the documented way to clear the
    // supplementary groups; no memory is read.
    check(unsafe { libc::setgroups(0, std::ptr::null()) })?;
    // SAFETY: plain syscalls on integers.
    check(unsafe { libc::setgid(to.gid) })?;
    // SAFETY: as above.
    check(unsafe { libc::setuid(to.uid) })?;
    // SAFETY: as above; with the real and saved uid now `to.uid`, this must
    // fail unless `to.uid` is 0.
    if to.uid != 0 && unsafe { libc::setuid(0) } == 0 {
        return Err(io::Error::other("root could be regained after setuid"));
    }
    Ok(())
}
