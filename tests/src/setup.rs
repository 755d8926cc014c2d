//! [`Setup`]: the usual world of one test: a folder, certificates, one
//! [`Upstream`] and a [`Gateway`] routing to it, built in one call, plus
//! curl helpers that pass the right TLS arguments.
//!
//! Fields drop in declaration order: the gateway stops before the origin
//! and the folder go.

use std::process::Output;

use crate::client::{curl, describe};
use crate::gateway::{Gateway, GatewayConfig};
use crate::pki::Pki;
use crate::tempdir::TempDir;
use crate::upstream::Upstream;

/// One test's gateway, origin, certificates and folder.
#[derive(Debug)]
pub struct Setup {
    pub gw: Gateway,
    pub up: Upstream,
    pub pki: Pki,
    pub dir: TempDir,
    tls: bool,
}

impl Setup {
    /// An mTLS listener (`client_auth = "require"`), adjusted by `configure`.
    pub fn mtls(configure: impl FnOnce(GatewayConfig) -> GatewayConfig) -> Setup {
        Setup::build(true, configure)
    }

    /// A plaintext listener, adjusted by `configure`.
    pub fn plain(configure: impl FnOnce(GatewayConfig) -> GatewayConfig) -> Setup {
        Setup::build(false, configure)
    }

    fn build(tls: bool, configure: impl FnOnce(GatewayConfig) -> GatewayConfig) -> Setup {
        let dir = TempDir::new();
        let pki = Pki::new(dir.path());
        let up = Upstream::start("origin");
        let base = if tls {
            GatewayConfig::mtls(&pki, &[up.addr()])
        } else {
            GatewayConfig::plain(&[up.addr()])
        };
        let gw = Gateway::start(&configure(base).to_toml(), dir.path());
        Setup {
            gw,
            up,
            pki,
            dir,
            tls,
        }
    }

    /// Waits until everything sent so far has been acted on: the gateway
    /// has closed every client connection and the origin has read every
    /// connection to its end. A test that checks something did *not*
    /// happen (nothing reached the origin) checks after this.
    pub fn settle(&self) {
        self.gw.wait_idle();
        crate::wait_until(
            std::time::Duration::from_secs(10),
            "the origin has no open connection",
            || self.up.open_connections() == 0,
        );
    }

    /// The listener's URL for `path`.
    pub fn url(&self, path: &str) -> String {
        self.gw.url(path)
    }

    /// `curl [mTLS args] <args>`; the caller adds the URL(s).
    pub fn curl(&self, args: &[&str]) -> Output {
        let mut all = if self.tls {
            self.pki.curl_mtls_args()
        } else {
            Vec::new()
        };
        all.extend(args.iter().map(|s| (*s).to_owned()));
        curl(&all)
    }

    /// [`Setup::curl`] with `--fail` and `path`'s URL appended; asserts
    /// success (quoting the gateway's stderr) and returns stdout.
    pub fn curl_ok(&self, args: &[&str], path: &str) -> Vec<u8> {
        let url = self.url(path);
        let mut all = args.to_vec();
        all.push("--fail");
        all.push(&url);
        let out = self.curl(&all);
        assert!(
            out.status.success(),
            "curl {url} failed: {}\n--- gateway stderr:\n{}",
            describe(&out),
            self.gw.stderr()
        );
        out.stdout
    }
}
