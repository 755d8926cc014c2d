//! TCP listeners: mTLS (or plaintext) terminated by the gateway, the bytes
//! relayed to the route's cluster. Driven by meshbench's `tls://`/`tcp://`
//! mode (every byte of every block checked on the way back) against
//! `meshbench upstream --tcp-echo`, and by a plain socket for half-closes.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::bench::{BenchUpstream, meshbench};
use harness::{Gateway, GatewayConfig, LISTENER, Pki, TempDir, describe, meshgate_bin};

fn meshctl_stat(dir: &Path, name: &str) -> u64 {
    let out = Command::new(meshgate_bin().with_file_name("meshctl"))
        .arg("--socket")
        .arg(dir.join("control.sock"))
        .args(["--json", "stats"])
        .stdin(Stdio::null())
        .output()
        .expect("run meshctl");
    assert!(out.status.success(), "meshctl stats: {}", describe(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v["total"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {v}"))
}

/// `config`'s TOML with the control socket in `dir` (for `meshctl stats`).
fn toml(config: &GatewayConfig, dir: &Path) -> String {
    format!(
        "{}\n[control]\nsocket = {}\n",
        config.to_toml(),
        harness::gateway::toml_str(&dir.join("control.sock").display().to_string())
    )
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// An address where nothing listens (bound, then closed).
fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

#[test]
fn mtls_tcp_listener_relays_every_byte_both_ways() {
    let dir = TempDir::new();
    let pki = Pki::new(dir.path());
    let up = BenchUpstream::start(&["--tcp-echo"]);
    let gw = Gateway::start(
        &toml(
            &GatewayConfig::mtls(&pki, &[up.addr()]).protocol("tcp"),
            dir.path(),
        ),
        dir.path(),
    );
    let url = format!("tls://localhost:{}", gw.addr(LISTENER).port());
    let (ca, cert, key) = (
        pki.ca.to_str().unwrap(),
        pki.client_cert.to_str().unwrap(),
        pki.client_key.to_str().unwrap(),
    );
    let r = meshbench(&[
        &url,
        "--cacert",
        ca,
        "--cert",
        cert,
        "--key",
        key,
        "-c",
        "4",
        "-n",
        "500",
        "--body-size",
        "20000",
    ]);
    assert_eq!(u(&r["errors"]), 0, "{r}\n--- gateway:\n{}", gw.stderr());
    assert_eq!(u(&r["requests"]), 500, "{r}");
    assert_eq!(u(&r["bytes"]), 500 * 20_000);
    // 4 connections carried the load (a warm-up connection meshbench gave
    // up on under a loaded machine may add a session without bytes).
    assert!(meshctl_stat(dir.path(), "tcp_sessions") >= 4);
    assert_eq!(meshctl_stat(dir.path(), "tcp_bytes_up"), 500 * 20_000);
    assert_eq!(meshctl_stat(dir.path(), "tcp_bytes_down"), 500 * 20_000);

    // Without a client certificate: no handshake, no upstream connection.
    let r = meshbench(&[&url, "--cacert", ca, "-c", "1", "-n", "3"]);
    assert_eq!(u(&r["errors"]), 3, "{r}");
    drop(gw);
    assert_eq!(up.stop().echoed_bytes, 500 * 20_000);
}

#[test]
fn half_close_is_passed_on_and_the_answer_still_comes_back() {
    let dir = TempDir::new();
    let up = BenchUpstream::start(&["--tcp-echo"]);
    let gw = Gateway::start(
        &GatewayConfig::plain(&[up.addr()]).protocol("tcp").to_toml(),
        dir.path(),
    );
    let mut s = TcpStream::connect(gw.addr(LISTENER)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    s.write_all(&data).expect("write");
    // Our FIN goes upstream; the echo server answers what it had, then
    // closes; its FIN comes back as our end of stream.
    s.shutdown(Shutdown::Write).expect("shutdown");
    let mut back = Vec::new();
    s.read_to_end(&mut back).expect("read to the end");
    assert!(
        back == data,
        "{} of {} bytes came back",
        back.len(),
        data.len()
    );
}

#[test]
fn connect_failures_are_retried_on_another_endpoint_or_close_the_client() {
    let dir = TempDir::new();
    let up = BenchUpstream::start(&["--tcp-echo"]);
    let dead = dead_addr();
    // Round robin over a dead and a live endpoint, retrying connect
    // failures: every connection gets through.
    let mut config = GatewayConfig::plain(&[dead, up.addr()])
        .protocol("tcp")
        .route_extra("[routes.retry]\nattempts = 2\non = [\"connect-failure\"]\n");
    config.lb = Some("round_robin".into());
    config.shards = 1;
    let gw = Gateway::start(&toml(&config, dir.path()), dir.path());
    let url = format!("tcp://{}", gw.addr(LISTENER));
    let r = meshbench(&[
        &url,
        "--new-conn",
        "-c",
        "2",
        "-n",
        "40",
        "--body-size",
        "100",
    ]);
    assert_eq!(u(&r["errors"]), 0, "{r}\n--- gateway:\n{}", gw.stderr());
    assert!(meshctl_stat(dir.path(), "upstream_connect_failures") > 0);
    assert!(meshctl_stat(dir.path(), "retries") > 0);
    drop(gw);

    // The cluster's retry budget bounds retries across connections: with
    // none allowed, a connection whose first pick was the dead endpoint is
    // closed (round robin: every other one).
    let dir = TempDir::new();
    let mut config = GatewayConfig::plain(&[dead, up.addr()])
        .protocol("tcp")
        .route_extra("[routes.retry]\nattempts = 2\n");
    config.lb = Some("round_robin".into());
    config.shards = 1;
    let text = toml(&config, dir.path()).replace(
        "\n[control]",
        "[clusters.retry_budget]\npercent = 0\nmin_concurrent = 0\n\n[control]",
    );
    let gw = Gateway::start(&text, dir.path());
    let url = format!("tcp://{}", gw.addr(LISTENER));
    let r = meshbench(&[
        &url,
        "--new-conn",
        "-c",
        "1",
        "-n",
        "20",
        "--body-size",
        "100",
    ]);
    let failed = u(&r["errors"]);
    assert!((8..=12).contains(&failed), "{r}");
    assert_eq!(meshctl_stat(dir.path(), "retry_overflows"), failed);
    assert_eq!(meshctl_stat(dir.path(), "retries"), 0);
    drop(gw);

    // Only the dead endpoint: the client's connection is closed, promptly.
    let dir = TempDir::new();
    let gw = Gateway::start(
        &toml(&GatewayConfig::plain(&[dead]).protocol("tcp"), dir.path()),
        dir.path(),
    );
    let mut s = TcpStream::connect(gw.addr(LISTENER)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"anyone?");
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("got {n} bytes from a dead upstream"),
    }
    assert_eq!(meshctl_stat(dir.path(), "tcp_sessions"), 0);
}

/// Both directions at once: the upstream streams 96 MB to the client from
/// the start while the client uploads 96 MB and reads only after its upload
/// is done. Direct this works (the upstream reads while it writes); a relay
/// that waits on one direction's send before reading the other would
/// deadlock until the idle timeout.
#[test]
fn both_directions_flow_at_once() {
    const SIZE: usize = 96 << 20;
    let dir = TempDir::new();
    let origin = TcpListener::bind("127.0.0.1:0").expect("bind");
    let origin_addr = origin.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (conn, _) = origin.accept().expect("accept");
        let mut reader = conn.try_clone().expect("clone");
        let mut writer = conn;
        let sending = std::thread::spawn(move || {
            let block = vec![0x5au8; 1 << 16];
            for _ in 0..SIZE / block.len() {
                writer.write_all(&block).expect("origin write");
            }
            writer.shutdown(Shutdown::Write).expect("origin shutdown");
        });
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buf).expect("origin read");
            if n == 0 {
                break;
            }
            got += n;
        }
        sending.join().expect("origin writer");
        got
    });
    let config = GatewayConfig::plain(&[origin_addr])
        .protocol("tcp")
        .idle_timeout_ms(3000);
    let gw = Gateway::start(&config.to_toml(), dir.path());
    let mut s = TcpStream::connect(gw.addr(LISTENER)).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let block = vec![0xa5u8; 1 << 16];
    for i in 0..SIZE / block.len() {
        s.write_all(&block).unwrap_or_else(|e| {
            panic!(
                "upload stalled after {} MiB: {e}\n--- gateway:\n{}",
                i / 16,
                gw.stderr()
            )
        });
    }
    s.shutdown(Shutdown::Write).expect("shutdown");
    let mut back = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => back += n,
            Err(e) => panic!("download failed after {back} bytes: {e}"),
        }
    }
    assert_eq!(back, SIZE, "the origin's stream arrived whole");
    assert_eq!(
        server.join().expect("origin"),
        SIZE,
        "the upload arrived whole"
    );
}
