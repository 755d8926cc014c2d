//! [`Nginx`]: nginx as a second, independent origin (static files), so the
//! gateway is also tested against an HTTP/1.1 implementation nobody here
//! wrote.
//!
//! nginx cannot bind port 0 and report the port, so [`Nginx::start`] picks a
//! port that was free a moment ago and retries with another one when nginx
//! reports the address in use. It runs in the foreground as one process
//! (`daemon off; master_process off;`), so stopping its PID stops all of it.
//! Every path nginx writes (pid, error log, temp folders) is in the test's
//! folder.
//!
//! A missing nginx is a failure, not a skip: the suite's setup installs it
//! (Debian: `apt-get install nginx-light`).

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::gateway::signal_child;

const ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How nginx listens.
#[derive(Debug, Clone, Copy)]
pub enum Listen<'a> {
    /// HTTP/1.1, plain.
    Http1,
    /// HTTP/2 by prior knowledge, plain ("h2c"); `/whoami` answers
    /// `http=HTTP/2.0`; requests are logged to `access.log`.
    H2c,
    /// TLS with this certificate and key; `h2` offers HTTP/2 by ALPN;
    /// `client_ca`: client certificates from this CA are required (mutual
    /// TLS). TLS listeners also answer `/whoami` with what nginx saw of the
    /// connection (`verify=SUCCESS reused=r proto=TLSv1.3 http=HTTP/2.0`)
    /// and log requests to `access.log` in the test's folder.
    Tls {
        cert: &'a Path,
        key: &'a Path,
        h2: bool,
        client_ca: Option<&'a Path>,
    },
}

/// A running nginx serving a folder.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

/// The nginx binary on `PATH` (or `/usr/sbin/nginx`, where Debian puts it
/// and which is not on a non-root `PATH`); panics with the install hint.
pub fn nginx_bin() -> PathBuf {
    crate::find_on_path("nginx")
        .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!(
                "nginx is not installed, and the nginx e2e tests need it: \
                 apt-get install -y nginx-light (or nginx)"
            )
        })
}

impl Nginx {
    /// Starts nginx serving `www` at `/`, with its files in `dir`.
    pub fn start(dir: &Path, www: &Path) -> Nginx {
        Nginx::start_with(dir, www, Listen::Http1)
    }

    /// [`start`](Self::start), listening as `listen` says.
    pub fn start_with(dir: &Path, www: &Path, listen: Listen<'_>) -> Nginx {
        let bin = nginx_bin();
        for temp in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.join(temp)).expect("nginx temp folder");
        }
        let mut last_log = String::new();
        for attempt in 0..ATTEMPTS {
            let port = crate::free_port();
            let conf = dir.join(format!("nginx-{attempt}.conf"));
            let log = dir.join(format!("nginx-{attempt}.error.log"));
            std::fs::write(&conf, config(dir, www, &log, port, listen)).expect("write nginx.conf");
            let out = File::create(dir.join(format!("nginx-{attempt}.out"))).expect("out");
            let child = Command::new(&bin)
                .arg("-p")
                .arg(dir)
                .arg("-e")
                .arg(&log)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("dup"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
            let mut nginx = Nginx {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                dir: dir.to_owned(),
            };
            match nginx.wait_ready() {
                Ok(()) => return nginx,
                Err(exited) => {
                    last_log = std::fs::read_to_string(&log).unwrap_or_default()
                        + &std::fs::read_to_string(dir.join(format!("nginx-{attempt}.out")))
                            .unwrap_or_default();
                    drop(nginx);
                    let in_use = last_log.contains("Address already in use");
                    assert!(
                        exited && in_use,
                        "nginx did not start (attempt {attempt}):\n{last_log}"
                    );
                }
            }
        }
        panic!("nginx found no free port in {ATTEMPTS} attempts:\n{last_log}");
    }

    /// `Ok` once the port accepts; `Err(true)` if nginx exited first,
    /// `Err(false)` on timeout.
    fn wait_ready(&mut self) -> Result<(), bool> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(true);
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                // The port answers; make sure it is ours and nginx is still up.
                if let Ok(None) = self.child.try_wait() {
                    return Ok(());
                }
                return Err(true);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(false)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// nginx's access log (TLS and h2c listeners), for tests that wait on
    /// what reached nginx.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// nginx's error log of the running instance, for messages.
    pub fn error_log(&self) -> String {
        let mut out = String::new();
        for attempt in 0..ATTEMPTS {
            out += &std::fs::read_to_string(self.dir.join(format!("nginx-{attempt}.error.log")))
                .unwrap_or_default();
        }
        out
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal_child(&self.child, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn config(dir: &Path, www: &Path, log: &Path, port: u16, listen: Listen<'_>) -> String {
    let d = dir.display();
    let (flags, tls, access_log) = match listen {
        Listen::Http1 => ("", String::new(), "off".to_owned()),
        Listen::H2c => (
            " http2",
            "location = /whoami { return 200 \"http=$server_protocol\\n\"; }".to_owned(),
            format!("{d}/access.log"),
        ),
        Listen::Tls {
            cert,
            key,
            h2,
            client_ca,
        } => {
            let mut tls = format!(
                "ssl_certificate {};\n        ssl_certificate_key {};\n        \
                 location = /whoami {{ return 200 \"verify=$ssl_client_verify reused=$ssl_session_reused proto=$ssl_protocol http=$server_protocol\\n\"; }}",
                cert.display(),
                key.display()
            );
            if let Some(ca) = client_ca {
                tls += &format!(
                    "\n        ssl_verify_client on;\n        ssl_client_certificate {};",
                    ca.display()
                );
            }
            let flags = if h2 { " ssl http2" } else { " ssl" };
            (flags, tls, format!("{d}/access.log"))
        }
    };
    format!(
        "daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {log} info;
events {{ worker_connections 256; }}
http {{
    access_log {access_log};
    default_type application/octet-stream;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port}{flags};
        {tls}
        location / {{ root {www}; }}
    }}
}}
",
        log = log.display(),
        www = www.display(),
    )
}
