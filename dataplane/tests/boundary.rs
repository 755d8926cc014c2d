//! The stream seam holds: the proxy layer (`src/proxy/`) and the TLS
//! stream (`src/tls/stream.rs`) reach sockets only through `net`'s types,
//! never naming a kernel socket type of the runtime. Adding a network
//! (the userspace stack) then touches `net/` and the daemon, not `proxy/`.

use std::path::{Path, PathBuf};

/// Names that would tie proxy code to kernel sockets.
const KERNEL_NAMES: &[&str] = &[
    "runtime::tcp",
    "TcpStream",
    "TcpSender",
    "TcpListener",
    "BoundSocket",
    "RxChunk",
    "RawFd",
    "libc::",
];

/// Each line of `source` (outside comments) naming a kernel type.
fn violations(source: &str) -> Vec<String> {
    source
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .filter(|(_, line)| KERNEL_NAMES.iter().any(|name| line.contains(name)))
        .map(|(n, line)| format!("line {}: {}", n + 1, line.trim()))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn proxy_and_tls_stream_name_no_kernel_type() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src.join("proxy"), &mut files);
    files.push(src.join("tls/stream.rs"));
    assert!(files.len() > 10, "the proxy sources were found: {files:?}");
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable");
        for v in violations(&text) {
            found.push(format!("{}: {v}", f.display()));
        }
    }
    assert!(
        found.is_empty(),
        "proxy code must reach sockets through crate::net only:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_catches_a_kernel_type() {
    let bad = "use crate::runtime::{BufPool, TcpStream};\nfn f(s: TcpStream) {}\n";
    assert_eq!(violations(bad).len(), 2);
    let fine = "use crate::net::{Stream, Plain};\n// a TcpStream in a comment is fine\n";
    assert!(violations(fine).is_empty());
}
