//! Process signals for the daemon's control thread: block them in every
//! thread, then wait for them synchronously (no async signal handlers).

use std::io;
use std::mem::MaybeUninit;

/// The signals the daemon acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Re-read the configuration.
    Hangup,
    /// Stop quickly.
    Interrupt,
    /// Drain and stop.
    Terminate,
    /// Reopen the access log files (after logrotate moved them).
    User1,
}

fn set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    unsafe {
        let mut set = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        set
    }
}

/// Blocks SIGHUP, SIGINT, SIGTERM and SIGUSR1 in the calling thread and every thread
/// it starts afterwards. Call first thing in `main`.
pub fn block() -> io::Result<()> {
    let set = set();
    // SAFETY: `set` is initialised; the old mask is not requested.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        Err(io::Error::from_raw_os_error(rc))
    } else {
        Ok(())
    }
}

/// Waits up to `timeout` for one of the blocked signals.
pub fn wait(timeout: std::time::Duration) -> Option<Signal> {
    let set = set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    // SAFETY: `set` and `ts` are valid for the call; no siginfo requested.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    match sig {
        libc::SIGHUP => Some(Signal::Hangup),
        libc::SIGINT => Some(Signal::Interrupt),
        libc::SIGTERM => Some(Signal::Terminate),
        libc::SIGUSR1 => Some(Signal::User1),
        _ => None,
    }
}
