//! `meshbench` over https against a third-party TLS server (`openssl
//! s_server -www`, which answers each connection with an HTTP/1.0 page and
//! closes): mTLS handshakes succeed, and failed handshakes are counted by
//! reason. Skipped (passes with a note) where the `openssl` tool is missing.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_meshbench");

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate.
fn make_certs(dir: &Path) -> bool {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    std::fs::write(dir.join("srv.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    std::fs::write(dir.join("cli.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    let mut ok = openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=test-ca",
            ],
        ]
        .concat(),
    );
    for (name, ext) in [("srv", "srv.ext"), ("cli", "cli.ext")] {
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        ok =
            ok && openssl(
                dir,
                &[
                    &["req"][..],
                    &ec,
                    &[
                        "-keyout",
                        &key,
                        "-out",
                        &csr,
                        "-subj",
                        &format!("/CN={name}"),
                    ],
                ]
                .concat(),
            ) && openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "2",
                    "-extfile",
                    ext,
                ],
            );
    }
    ok
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bench(dir: &Path, args: &[&str]) -> serde_json::Value {
    let json = dir.join("report.json");
    let out = Command::new(BIN)
        .args(args)
        .args(["-q", "--json", json.to_str().unwrap()])
        .current_dir(dir)
        .output()
        .expect("run meshbench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

#[test]
fn mtls_handshakes_and_failures_by_reason() {
    let dir: PathBuf = std::env::temp_dir().join(format!("meshbench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    if !make_certs(&dir) {
        eprintln!("skipped: the openssl tool is missing or failed");
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let accept = format!("127.0.0.1:{port}");
    let _server = Server(
        Command::new("openssl")
            .args([
                "s_server", "-accept", &accept, "-cert", "srv.pem", "-key", "srv.key",
            ])
            .args(["-CAfile", "ca.pem", "-Verify", "1", "-www", "-quiet"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_server"),
    );
    let started = Instant::now();
    while TcpStream::connect(&accept).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "s_server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("https://{accept}/");
    let mtls = [
        "--cacert", "ca.pem", "--cert", "cli.pem", "--key", "cli.key",
    ];

    for version in ["--tls13", "--tls12"] {
        let r = bench(
            &dir,
            &[&[url.as_str(), "-c", "2", "-n", "10", version][..], &mtls].concat(),
        );
        assert_eq!(r["requests"], 10, "{version}: {r}");
        assert_eq!(r["status"]["2xx"], 10);
        assert_eq!(
            r["connections_opened"], 10,
            "s_server -www closes after each page"
        );
    }

    // The server's certificate is not signed by the CA we trust.
    let r = bench(
        &dir,
        &[
            &url, "-n", "3", "--cacert", "cli.pem", "--cert", "cli.pem", "--key", "cli.key",
        ],
    );
    assert_eq!(r["errors"], 3);
    assert_eq!(r["error_kinds"][0][0], "tls:unknown_issuer", "{r}");

    // No client certificate: the server refuses (TLS 1.2 fails in the
    // handshake; TLS 1.3 after it, on the first read).
    let r = bench(&dir, &[&url, "-n", "3", "--cacert", "ca.pem", "--tls12"]);
    assert_eq!(r["errors"], 3);
    assert!(
        r["error_kinds"][0][0]
            .as_str()
            .unwrap()
            .starts_with("tls:alert_"),
        "{r}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
