//! Unix-socket peer credentials (`SO_PEERCRED`) and the process's own uid,
//! for the control socket's access check.
//!
//! The control socket (in the control crate) is served by blocking std
//! threads, not by a shard; it lives here only because this is the one
//! module allowed to hold `unsafe` code. Both calls are plain syscalls with
//! no memory handed to the kernel beyond a stack `ucred`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The credentials of the process at the other end of a connected Unix
/// socket, as recorded by the kernel when it connected (or when the socket
/// pair was created).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// `getsockopt(fd, SOL_SOCKET, SO_PEERCRED)`.
pub fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<PeerCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `fd` is a live descriptor for the duration of the borrow;
    // `cred` and `len` are valid, writable stack locations and `len` holds
    // the exact size of `cred`, so the kernel writes at most that many bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != size_of::<libc::ucred>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "SO_PEERCRED returned a short ucred",
        ));
    }
    Ok(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// The peer's uid on a connected Unix socket.
pub fn peer_uid(fd: BorrowedFd<'_>) -> io::Result<u32> {
    peer_cred(fd).map(|c| c.uid)
}

/// The peer's pid on a connected Unix socket (0 if the peer is in another
/// pid namespace the kernel cannot map).
pub fn peer_pid(fd: BorrowedFd<'_>) -> io::Result<i32> {
    peer_cred(fd).map(|c| c.pid)
}

/// This process's effective uid.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn socketpair_peer_is_this_process() {
        let (a, b) = UnixStream::pair().unwrap();
        let cred = peer_cred(a.as_fd()).unwrap();
        assert_eq!(cred.uid, effective_uid());
        assert_eq!(cred.pid, std::process::id() as i32);
        assert_eq!(peer_uid(b.as_fd()).unwrap(), effective_uid());
        assert_eq!(peer_pid(b.as_fd()).unwrap(), std::process::id() as i32);
    }

    #[test]
    fn not_a_socket_is_an_error() {
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(peer_uid(f.as_fd()).is_err());
    }
}
