//! TLS origination (`[clusters.tls]`) against nginx, an upstream nobody
//! here wrote: nginx holds an X.509-SVID (a SPIFFE ID as its only name)
//! and requires our client certificate; the gateway verifies nginx's
//! SPIFFE ID, presents its own, pools and resumes sessions, health-checks
//! over TLS, and refuses an upstream with the wrong identity with a clear,
//! counted error. curl with a client certificate is the caller.

use std::time::Duration;

use harness::gateway::{self, toml_str};
use harness::pki::path_str;
use harness::{Gateway, GatewayConfig, Listen, Nginx, Pki, TempDir, describe, wait_until};

const UPSTREAM_ID: &str = "spiffe://meshgate.local/ns/pay/sa/payments";
const GATEWAY_ID: &str = "spiffe://meshgate.local/ns/edge/sa/gateway";

struct World {
    nginx: Nginx,
    pki: Pki,
    dir: TempDir,
    /// The gateway's own client certificate and key (its identity to
    /// upstreams).
    identity: (std::path::PathBuf, std::path::PathBuf),
}

/// nginx with an SVID for [`UPSTREAM_ID`], requiring client certificates
/// from the test CA, serving `hello.txt`.
fn world() -> World {
    let dir = TempDir::new();
    let pki = Pki::new(dir.path());
    let (cert, key) = pki.issue_svid_server("payments", UPSTREAM_ID);
    let identity = pki.issue_client("gateway-client", Some(GATEWAY_ID));
    let www = dir.join("www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("hello.txt"), "hello over mTLS\n").expect("file");
    let nginx = Nginx::start_with(
        dir.path(),
        &www,
        Listen::Tls {
            cert: &cert,
            key: &key,
            h2: false,
            client_ca: Some(&pki.ca),
        },
    );
    World {
        nginx,
        pki,
        dir,
        identity,
    }
}

impl World {
    /// `[clusters.tls]` with our certificate and `verify_spiffe_id = [id]`.
    fn cluster_tls(&self, id: &str) -> String {
        format!(
            "[clusters.tls]\nca = {}\ncert = {}\nkey = {}\nverify_spiffe_id = [{}]",
            toml_str(&path_str(&self.pki.ca)),
            toml_str(&path_str(&self.identity.0)),
            toml_str(&path_str(&self.identity.1)),
            toml_str(id),
        )
    }

    fn gateway(&self, cluster_extra: &str) -> Gateway {
        let config = GatewayConfig::mtls(&self.pki, &[self.nginx.addr()])
            .shards(1)
            .cluster_extra(cluster_extra);
        Gateway::start(&config.to_toml(), self.dir.path())
    }

    fn curl(&self, gw: &Gateway, path: &str) -> std::process::Output {
        let mut args = self.pki.curl_mtls_args();
        args.extend(["-sS".into(), "-i".into(), gw.url(path)]);
        harness::curl(&args)
    }

    fn context(&self, gw: &Gateway) -> String {
        format!(
            "--- gateway stderr:\n{}\n--- nginx error log:\n{}",
            gw.stderr(),
            self.nginx.error_log()
        )
    }
}

fn body(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

#[test]
fn originates_mutual_tls_to_nginx_verifying_its_spiffe_id() {
    let w = world();
    let gw = w.gateway(&w.cluster_tls(UPSTREAM_ID));

    let out = w.curl(&gw, "/hello.txt");
    assert!(
        out.status.success(),
        "{}\n{}",
        describe(&out),
        w.context(&gw)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("HTTP/1.1 200"),
        "{}\n{}",
        describe(&out),
        w.context(&gw)
    );
    assert_eq!(body(&out), "hello over mTLS\n");

    // nginx verified the gateway's certificate.
    let out = w.curl(&gw, "/whoami");
    let seen = body(&out);
    assert!(seen.starts_with("verify=SUCCESS"), "nginx saw: {seen:?}");
    assert_eq!(gw.counter("upstream_tls_failures"), 0);
    assert!(gw.counter("upstream_tls_handshakes") >= 1);
    // The second request went on the pooled TLS connection.
    assert!(gw.counter("upstream_reused") >= 1, "{}", gw.stats());
}

#[test]
fn a_new_connection_resumes_the_upstream_tls_session() {
    let w = world();
    // No pooling: every request opens a new TLS connection to nginx.
    let tls = w.cluster_tls(UPSTREAM_ID);
    let gw = w.gateway(&format!(
        "[clusters.pool]\nmax_idle_per_endpoint = 0\n{tls}"
    ));
    let first = body(&w.curl(&gw, "/whoami"));
    assert!(first.contains("reused=."), "first: {first:?}");
    // nginx sends its session ticket after the first handshake; the next
    // connections resume (wait: the ticket arrives with the response).
    wait_until(
        Duration::from_secs(10),
        "a resumed upstream handshake",
        || body(&w.curl(&gw, "/whoami")).contains("reused=r"),
    );
    assert!(gw.counter("upstream_tls_resumed") >= 1, "{}", gw.stats());
}

#[test]
fn an_upstream_with_another_spiffe_id_is_refused_with_a_named_error() {
    let w = world();
    let gw = w.gateway(&w.cluster_tls("spiffe://meshgate.local/ns/pay/sa/ledger"));
    let out = w.curl(&gw, "/hello.txt");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.starts_with("HTTP/1.1 503"),
        "{text}\n{}",
        w.context(&gw)
    );
    assert!(
        text.to_ascii_lowercase()
            .contains("x-meshgate-error: upstream_tls"),
        "{text}"
    );
    assert!(gw.counter("upstream_tls_failures") >= 1);
    // The log names the cluster, the endpoint and the identity presented.
    let addr = w.nginx.addr().to_string();
    wait_until(Duration::from_secs(5), "the TLS failure logged", || {
        let log = gw.stderr();
        log.contains("cluster \"backend\"") && log.contains(&addr) && log.contains(UPSTREAM_ID)
    });
    // Nothing reached nginx's content handler.
    assert!(!w.nginx.access_log().contains("GET /hello.txt"));
}

#[test]
fn without_our_certificate_nginx_refuses_and_the_caller_sees_its_answer() {
    let w = world();
    let tls = format!(
        "[clusters.tls]\nca = {}\nverify_spiffe_id = [{}]",
        toml_str(&path_str(&w.pki.ca)),
        toml_str(UPSTREAM_ID)
    );
    let gw = w.gateway(&tls);
    let out = w.curl(&gw, "/hello.txt");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // nginx completes the handshake and answers 400 "No required SSL
    // certificate was sent": the gateway passes nginx's answer on.
    assert!(
        text.starts_with("HTTP/1.1 400"),
        "{text}\n{}",
        w.context(&gw)
    );
}

#[test]
fn health_checks_run_over_tls_with_the_same_verification() {
    let w = world();
    let health =
        "[clusters.health]\npath = \"/whoami\"\ninterval_ms = 200\ntimeout_ms = 150\nunhealthy = 1";
    let gw = w.gateway(&format!(
        "all_unhealthy = \"fail\"\n{health}\n{}",
        w.cluster_tls(UPSTREAM_ID)
    ));
    wait_until(
        Duration::from_secs(10),
        "a TLS health check at nginx",
        || w.nginx.access_log().contains("meshgate-health"),
    );
    let log = w.nginx.access_log();
    let line = log
        .lines()
        .find(|l| l.contains("meshgate-health"))
        .expect("health line");
    assert!(line.contains("\"GET /whoami HTTP/1.1\" 200"), "{line}");
    let out = w.curl(&gw, "/hello.txt");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("HTTP/1.1 200"));

    // The wrong identity fails the check: the endpoint goes unhealthy.
    let bad = w.gateway(&format!(
        "all_unhealthy = \"fail\"\n{health}\n{}",
        w.cluster_tls("spiffe://meshgate.local/ns/pay/sa/ledger")
    ));
    wait_until(
        Duration::from_secs(10),
        "the endpoint marked unhealthy",
        || {
            let log = bad.stderr();
            log.contains("is unhealthy") && log.contains("upstream identity rejected")
        },
    );
}

#[test]
fn a_tcp_listener_terminates_tls_and_originates_its_own() {
    let w = world();
    let config = GatewayConfig::mtls(&w.pki, &[w.nginx.addr()])
        .shards(1)
        .protocol("tcp")
        .cluster_extra(&w.cluster_tls(UPSTREAM_ID));
    let gw = Gateway::start(&config.to_toml(), w.dir.path());
    // curl's HTTP goes through the gateway's TLS, then ours to nginx.
    let out = w.curl(&gw, "/whoami");
    let seen = body(&out);
    assert!(
        seen.starts_with("verify=SUCCESS"),
        "{}\n{}",
        describe(&out),
        w.context(&gw)
    );
}

#[test]
fn cluster_tls_config_errors_name_the_field() {
    let w = world();
    let base = GatewayConfig::mtls(&w.pki, &[w.nginx.addr()]);
    let cases = [
        (
            format!(
                "[clusters.tls]\nca = {}\ncert = {}",
                toml_str(&path_str(&w.pki.ca)),
                toml_str(&path_str(&w.identity.0))
            ),
            "clusters[0].tls.key",
        ),
        (
            format!(
                "[clusters.tls]\nca = {}\nalpn = [\"h2\"]",
                toml_str(&path_str(&w.pki.ca))
            ),
            "clusters[0].tls.alpn[0]",
        ),
        (
            format!(
                "[clusters.tls]\nca = {}\nverify_spiffe_id = [\"payments\"]",
                toml_str(&path_str(&w.pki.ca))
            ),
            "clusters[0].tls.verify_spiffe_id[0]",
        ),
        (
            "[clusters.tls]\nca = \"no-such-ca.pem\"".to_owned(),
            "clusters[0].tls.ca",
        ),
        (
            format!(
                "[clusters.tls]\nca = {}\nsni = \"not a name\"",
                toml_str(&path_str(&w.pki.ca))
            ),
            "clusters[0].tls.sni",
        ),
        ("protocol = \"h2\"".to_owned(), "clusters[0].protocol"),
    ];
    for (extra, field) in cases {
        let text = base.clone().cluster_extra(&extra).to_toml();
        let (out, _) = gateway::check(&text, w.dir.path());
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{extra}: {}", describe(&out));
        assert!(
            err.contains(field),
            "{extra}: stderr should name {field}:\n{err}"
        );
    }
}

/// A TLS failure is held against the endpoint like a connect failure: with
/// `consecutive_failures = 1` the endpoint with the wrong identity is
/// ejected and the next request goes to the good one.
#[test]
fn tls_failures_feed_outlier_ejection() {
    let w = world();
    // A second nginx, same SVID but another CA's: its chain fails.
    let other = harness::TempDir::new();
    let impostor_pki = Pki::new(other.path());
    let (cert, key) = impostor_pki.issue_svid_server("payments", UPSTREAM_ID);
    let www = other.join("www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("hello.txt"), "impostor\n").expect("file");
    let impostor = Nginx::start_with(
        other.path(),
        &www,
        Listen::Tls {
            cert: &cert,
            key: &key,
            h2: false,
            client_ca: None,
        },
    );
    let config = GatewayConfig::mtls(&w.pki, &[impostor.addr(), w.nginx.addr()])
        .shards(1)
        .cluster_extra(&format!(
            "lb = \"round_robin\"\n[clusters.outlier]\nconsecutive_failures = 1\n{}",
            w.cluster_tls(UPSTREAM_ID)
        ));
    let gw = Gateway::start(&config.to_toml(), w.dir.path());
    // Round robin: within two requests one goes to the impostor and fails
    // its handshake; after that every request is served by the real one.
    for _ in 0..2 {
        let _ = w.curl(&gw, "/hello.txt");
    }
    // (The counter is published by the shard's housekeeping tick.)
    wait_until(Duration::from_secs(10), "the impostor ejected", || {
        gw.counter("outlier_ejections") == 1
    });
    for _ in 0..4 {
        let out = w.curl(&gw, "/hello.txt");
        assert_eq!(body(&out), "hello over mTLS\n", "{}", w.context(&gw));
    }
}
