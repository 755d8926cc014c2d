//! Certificate expiry: when each certificate file a listener uses runs out
//! (its own chain's leaf, every CA in `client_ca`), shown by `meshctl
//! status` and warned about in the log from 7 days ahead.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::Gateway;
use crate::config::Config;

/// Warn this many days ahead.
pub const WARN_DAYS: i64 = 7;

/// One certificate file of a listener and when it (its earliest
/// certificate) expires.
#[derive(Debug, Clone, PartialEq)]
pub struct Expiry {
    pub listener: String,
    /// `cert`, `client_ca` or `trust_domain_ca`.
    pub kind: &'static str,
    pub path: String,
    /// Unix seconds; `None` when the file cannot be read now.
    pub not_after: Option<i64>,
    pub error: Option<String>,
}

impl Expiry {
    /// Whole days left at `now` (negative once expired).
    pub fn days_left(&self, now: i64) -> Option<i64> {
        self.not_after.map(|t| (t - now).div_euclid(86_400))
    }
}

/// Every certificate file of `config`'s listeners.
pub fn expiries(config: &Config) -> Vec<Expiry> {
    let mut out = Vec::new();
    for l in &config.listeners {
        let Some(tls) = &l.tls else { continue };
        let files = [
            ("cert", Some(&tls.cert)),
            ("client_ca", tls.client_ca.as_ref()),
        ];
        for (kind, path) in files {
            let Some(path) = path else { continue };
            out.push(read(&l.name, kind, path, kind == "cert"));
        }
        for d in &tls.trust_domains {
            out.push(read(&l.name, "trust_domain_ca", &d.ca, false));
        }
    }
    out
}

fn read(listener: &str, kind: &'static str, path: &Path, leaf_only: bool) -> Expiry {
    let result = dataplane::tls::certificate_expiry(path);
    let (not_after, error) = match result {
        // A chain expires with its leaf; a CA bundle with its first CA to go.
        Ok(times) if leaf_only => (times.first().copied(), None),
        Ok(times) => (times.iter().min().copied(), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Expiry {
        listener: listener.to_owned(),
        kind,
        path: path.display().to_string(),
        not_after,
        error,
    }
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Logs a warning for each file within [`WARN_DAYS`] of expiry (or past
/// it). Returns how many.
pub fn warn_soon_expiring(expiries: &[Expiry], now: i64) -> usize {
    let mut n = 0;
    for e in expiries {
        if let Some(days) = e.days_left(now)
            && days < WARN_DAYS
        {
            n += 1;
            if days < 0 {
                log::error!(
                    "listener {:?}: {} {} expired {} day(s) ago",
                    e.listener,
                    e.kind,
                    e.path,
                    -days
                );
            } else {
                log::warn!(
                    "listener {:?}: {} {} expires in {days} day(s)",
                    e.listener,
                    e.kind,
                    e.path
                );
            }
        }
    }
    n
}

impl Gateway {
    /// The running configuration's certificate files and their expiry.
    pub fn expiries(&self) -> Vec<Expiry> {
        expiries(&self.lock().config)
    }

    /// `status`'s `certificates` rows.
    pub fn certificates_json(&self) -> Value {
        let now = unix_now();
        Value::Array(
            self.expiries()
                .iter()
                .map(|e| {
                    json!({
                        "listener": e.listener,
                        "kind": e.kind,
                        "path": e.path,
                        "not_after_unix": e.not_after,
                        "days_left": e.days_left(now),
                        "error": e.error,
                    })
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_expiring(days: i64, dir: &Path, name: &str) -> std::path::PathBuf {
        let mut p = rcgen::CertificateParams::new(vec!["x".to_owned()]).unwrap();
        let at = unix_now() + days * 86_400 + 3600;
        p.not_after = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(at as u64);
        let key = rcgen::KeyPair::generate().unwrap();
        let path = dir.join(name);
        std::fs::write(&path, p.self_signed(&key).unwrap().pem()).unwrap();
        path
    }

    #[test]
    fn days_left_and_warnings() {
        let dir = std::env::temp_dir().join(format!("meshgate-expiry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let soon = read("l", "cert", &cert_expiring(3, &dir, "soon.pem"), true);
        let later = read("l", "cert", &cert_expiring(400, &dir, "later.pem"), true);
        let missing = read("l", "client_ca", &dir.join("missing.pem"), false);
        let now = unix_now();
        assert_eq!(soon.days_left(now), Some(3));
        assert_eq!(later.days_left(now), Some(400));
        assert!(missing.not_after.is_none() && missing.error.is_some());
        assert_eq!(warn_soon_expiring(&[soon.clone(), later, missing], now), 1);
        // Past its date: still warned (an error), days negative.
        assert_eq!(soon.days_left(now + 5 * 86_400), Some(-2));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
