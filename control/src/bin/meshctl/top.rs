//! `meshctl top`'s loop: asks the daemon for `top` each second, turns the
//! samples into rates over the last few seconds (`control::top`), and
//! redraws the screen; keys change the sort, `q` quits.
//!
//! The terminal is put in non-canonical mode with `stty` (no echo, a read
//! returns after a key or after one second), which doubles as the refresh
//! tick, and restored on the way out. Without a terminal (`--iterations`),
//! frames are printed one after another.

use std::collections::VecDeque;
use std::io::{self, IsTerminal, Read, Write};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use control::socket::{Client, Command};
use control::top::{Frame, Sample, SortBy};

use super::{Failure, client_failure, fail, outcome};

/// Samples kept: rates are over up to this many seconds, smoothing the
/// shards' once-a-second publishing.
const WINDOW: usize = 4;

/// The terminal in non-canonical mode, restored on drop.
struct RawTerminal {
    saved: String,
}

impl RawTerminal {
    /// `None` when stdin is not a terminal `stty` can set.
    fn enter() -> Option<RawTerminal> {
        if !io::stdin().is_terminal() {
            return None;
        }
        let saved = stty(&["-g"])?;
        stty(&["-icanon", "-echo", "-isig", "min", "0", "time", "10"])?;
        // Hide the cursor, clear.
        print!("\x1b[?25l\x1b[2J");
        Some(RawTerminal {
            saved: saved.trim().to_owned(),
        })
    }

    /// Rows and columns (`stty size`), else 24 × 80.
    fn size() -> (usize, usize) {
        stty(&["size"])
            .and_then(|s| {
                let mut it = s.split_whitespace().map(|n| n.parse().ok());
                Some((it.next()??, it.next()??))
            })
            .unwrap_or((24, 80))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = stty(&[self.saved.as_str()]);
        println!("\x1b[?25h");
        let _ = io::stdout().flush();
    }
}

/// Runs `stty` on this terminal; its output, or `None` when it failed.
fn stty(args: &[&str]) -> Option<String> {
    let out = Process::new("stty")
        .args(args)
        .stdin(Stdio::inherit())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One `top` sample from the daemon.
fn sample(socket: &Path, timeout: Option<Duration>) -> Result<Sample, Failure> {
    let response = Client::connect(socket, timeout)
        .and_then(|mut c| c.call(Command::Top))
        .map_err(|e| client_failure(&e, socket))?;
    let result = outcome(response, socket)?;
    Sample::from_json(&result).map_err(|e| fail(2, format!("meshctl top: {e}")))
}

/// The loop; `iterations`: print that many frames and stop (no terminal
/// needed).
pub(super) fn run(
    socket: &Path,
    timeout: Option<Duration>,
    iterations: Option<u64>,
) -> Result<(), Failure> {
    let terminal = match iterations {
        Some(_) => None,
        None => Some(RawTerminal::enter().ok_or_else(|| {
            fail(
                2,
                "meshctl top needs a terminal (or --iterations N to print frames)",
            )
        })?),
    };
    let mut samples: VecDeque<(Instant, Sample)> = VecDeque::new();
    let mut sort = SortBy::default();
    let mut drawn = 0u64;
    let mut last_sample: Option<Instant> = None;
    loop {
        if last_sample.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            let s = sample(socket, timeout)?;
            last_sample = Some(Instant::now());
            samples.push_back((Instant::now(), s));
            if samples.len() > WINDOW {
                samples.pop_front();
            }
            if let (Some((t0, first)), Some((t1, now))) = (samples.front(), samples.back())
                && samples.len() > 1
            {
                let mut frame = Frame::between(first, now, (*t1 - *t0).as_secs_f64());
                frame.sort(sort);
                let (rows, cols) = match terminal {
                    Some(_) => RawTerminal::size(),
                    None => (200, 100),
                };
                let text = frame.render(sort, cols, rows);
                let mut out = io::stdout().lock();
                if terminal.is_some() {
                    // Home, draw, clear what the last frame left below.
                    let _ = write!(out, "\x1b[H{}\x1b[J", text.replace('\n', "\x1b[K\r\n"));
                } else {
                    let _ = writeln!(out, "{text}");
                }
                let _ = out.flush();
                drawn += 1;
                if iterations.is_some_and(|n| drawn >= n) {
                    return Ok(());
                }
            }
        }
        if terminal.is_some() {
            // Returns after a key, or after a second with nothing.
            let mut keys = [0u8; 16];
            let n = io::stdin().read(&mut keys).unwrap_or(0);
            for &k in &keys[..n] {
                if k == b'q' || k == 3 {
                    return Ok(());
                }
                if let Some(by) = SortBy::from_key(k) {
                    sort = by;
                    // Redraw now in the new order.
                    last_sample = None;
                    samples.pop_back();
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}
