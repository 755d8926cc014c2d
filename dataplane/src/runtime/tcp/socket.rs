//! Socket syscalls for the kernel TCP types: address conversion, socket
//! creation and options, and closing a descriptor through the ring; plus
//! [`BoundSocket`], a listening socket bound on the control thread.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use io_uring::{opcode, types};

use crate::runtime::driver;

pub(super) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A socket address in the kernel's layout.
pub(super) struct RawAddr {
    pub(super) storage: libc::sockaddr_storage,
    pub(super) len: libc::socklen_t,
}

impl RawAddr {
    pub(super) fn from_std(addr: &SocketAddr) -> RawAddr {
        // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
        let mut storage: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
        let len = match addr {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
                let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr = libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                };
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
                let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr = libc::in6_addr {
                    s6_addr: a.ip().octets(),
                };
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                size_of::<libc::sockaddr_in6>()
            }
        };
        RawAddr {
            storage,
            len: len as libc::socklen_t,
        }
    }

    pub(super) fn to_std(&self) -> io::Result<SocketAddr> {
        match self.storage.ss_family as libc::c_int {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_in) };
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                Ok(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6 = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_in6) };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            f => Err(io::Error::other(format!("unexpected address family {f}"))),
        }
    }

    pub(super) fn empty() -> RawAddr {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let storage = unsafe { MaybeUninit::zeroed().assume_init() };
        RawAddr {
            storage,
            len: size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }
}

pub(super) fn new_socket(addr: &SocketAddr) -> io::Result<RawFd> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain syscall; the result is checked.
    cvt(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })
}

pub(super) fn set_int_opt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const _ as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

pub(super) fn local_addr_of(fd: RawFd) -> io::Result<SocketAddr> {
    let mut raw = RawAddr::empty();
    // SAFETY: `raw.storage` is writable for `raw.len` bytes.
    cvt(unsafe {
        libc::getsockname(
            fd,
            &mut raw.storage as *mut _ as *mut libc::sockaddr,
            &mut raw.len,
        )
    })?;
    raw.to_std()
}

pub(super) fn peer_addr_of(fd: RawFd) -> io::Result<SocketAddr> {
    let mut raw = RawAddr::empty();
    // SAFETY: `raw.storage` is writable for `raw.len` bytes.
    cvt(unsafe {
        libc::getpeername(
            fd,
            &mut raw.storage as *mut _ as *mut libc::sockaddr,
            &mut raw.len,
        )
    })?;
    raw.to_std()
}

/// Closes `fd` through the ring (ordered after SQEs already queued for it),
/// or directly when the runtime is gone.
pub(super) fn close_fd(fd: RawFd) {
    let mut closed = false;
    driver::try_with(|d| {
        let sqe = opcode::Close::new(types::Fd(fd))
            .build()
            .user_data(u64::MAX);
        // SAFETY: close references no memory.
        unsafe { d.push(&sqe) };
        closed = true;
    });
    if !closed {
        // SAFETY: we own `fd` and nobody uses it after this.
        unsafe { libc::close(fd) };
    }
}

/// A bound, listening socket not yet owned by a shard's ring. Created on any
/// thread (the control thread binds every shard's socket up front, so a bad
/// address fails before any shard starts) and moved to its shard.
#[derive(Debug)]
pub struct BoundSocket {
    pub(super) fd: RawFd,
    pub(super) local: SocketAddr,
}

impl BoundSocket {
    /// Binds and listens on `addr`; with `reuse_port`, several sockets (one
    /// per shard) share the address and the kernel spreads connections.
    pub fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<BoundSocket> {
        let fd = new_socket(&addr)?;
        let setup = || -> io::Result<SocketAddr> {
            set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
            if reuse_port {
                set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
            }
            if addr.is_ipv6() {
                set_int_opt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
            }
            let raw = RawAddr::from_std(&addr);
            // SAFETY: `raw` holds a valid sockaddr of `raw.len` bytes.
            cvt(unsafe {
                libc::bind(
                    fd,
                    &raw.storage as *const _ as *const libc::sockaddr,
                    raw.len,
                )
            })?;
            // SAFETY: plain syscall.
            cvt(unsafe { libc::listen(fd, 4096) })?;
            local_addr_of(fd)
        };
        match setup() {
            Ok(local) => Ok(BoundSocket { fd, local }),
            Err(e) => {
                // SAFETY: we own `fd` and no ring operation names it.
                unsafe { libc::close(fd) };
                Err(e)
            }
        }
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if self.fd >= 0 {
            // SAFETY: we own `fd`; no ring operation names it yet.
            unsafe { libc::close(self.fd) };
        }
    }
}
