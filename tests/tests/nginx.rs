//! The gateway in front of nginx, an origin written by someone else: a
//! static file comes through mTLS byte for byte. nginx must be installed
//! (`apt-get install nginx-light`); without it these tests fail.

use harness::{
    Gateway, GatewayConfig, Nginx, Pki, TempDir, describe, pattern, sha256_file, sha256_hex,
};

/// nginx serving `files` from `<dir>/www`, and an mTLS gateway in front.
struct NginxWorld {
    gw: Gateway,
    nginx: Nginx,
    pki: Pki,
    dir: TempDir,
}

fn nginx_world(files: &[(&str, &[u8])]) -> NginxWorld {
    let dir = TempDir::new();
    let www = dir.join("www");
    std::fs::create_dir(&www).expect("www");
    for (name, data) in files {
        std::fs::write(www.join(name), data).expect("write served file");
    }
    let nginx = Nginx::start(dir.path(), &www);
    let pki = Pki::new(dir.path());
    let gw = Gateway::start(
        &GatewayConfig::mtls(&pki, &[nginx.addr()]).to_toml(),
        dir.path(),
    );
    NginxWorld {
        gw,
        nginx,
        pki,
        dir,
    }
}

impl NginxWorld {
    fn curl(&self, extra: &[&str], path: &str) -> std::process::Output {
        let mut args = self.pki.curl_mtls_args();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args.push("--fail".into());
        args.push(self.gw.url(path));
        harness::curl(&args)
    }

    fn context(&self) -> String {
        format!(
            "--- gateway stderr:\n{}\n--- nginx error log:\n{}",
            self.gw.stderr(),
            self.nginx.error_log()
        )
    }
}

#[test]
fn serves_a_1_mib_file_from_nginx_through_mtls() {
    let data = pattern(1024 * 1024);
    let w = nginx_world(&[("big.bin", &data)]);
    let output = w.dir.join("big.out");
    let out = w.curl(&["-o", output.to_str().expect("UTF-8 path")], "/big.bin");
    assert!(out.status.success(), "{}\n{}", describe(&out), w.context());
    assert_eq!(sha256_file(&output), sha256_hex(&data), "{}", w.context());
}

#[test]
fn nginx_keep_alive_and_404_through_the_gateway() {
    let w = nginx_world(&[("a.txt", b"first file\n"), ("b.txt", b"second file\n")]);
    let mut args = w.pki.curl_mtls_args();
    args.extend(
        [
            "-w",
            "%{http_code} %{num_connects}\n",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
        ]
        .map(String::from),
    );
    args.push(w.gw.url("/a.txt"));
    args.push(w.gw.url("/missing.txt"));
    args.push(w.gw.url("/b.txt"));
    let out = harness::curl(&args);
    assert!(out.status.success(), "{}\n{}", describe(&out), w.context());
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(got, ["200 1", "404 0", "200 0"], "{}", w.context());
}
