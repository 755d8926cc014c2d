//! What the gateway lets a caller's or an upstream's headers and framing
//! do (issue 11 §3), with raw bytes through the real binary: absolute-form
//! targets, `Connection` naming fields the route adds, and chunked framing
//! an HTTP/1.0 client cannot read. (Size bounds of chunks and
//! Content-Length are in `smuggling.rs`.)

use harness::client::READ_TIMEOUT;
use harness::{Gateway, LISTENER, RawConn, Response, Scripted, Setup, TempDir, Upstream};

/// A plaintext listener with the route TOML `route` (its `[[routes]]`
/// line included) in front of `up`.
fn gateway_with_route(dir: &TempDir, up: &Upstream, route: &str) -> Gateway {
    gateway(dir, up, "", route)
}

/// [`gateway_with_route`] with listener keys `listener` too.
fn gateway(dir: &TempDir, up: &Upstream, listener: &str, route: &str) -> Gateway {
    let text = format!(
        "[[listeners]]\nname = \"{LISTENER}\"\naddress = \"127.0.0.1:0\"\n{listener}\n\n{route}\n\n\
         [[clusters]]\nname = \"backend\"\nendpoints = [\"{}\"]\n",
        up.addr()
    );
    Gateway::start(&text, dir.path())
}

fn catch_all() -> String {
    format!("[[routes]]\nlistener = \"{LISTENER}\"\ncluster = \"backend\"")
}

fn raw(gw: &Gateway, request: &[u8]) -> Response {
    let mut c = RawConn::connect(gw.addr(LISTENER));
    c.send(request).expect("send");
    c.read_response()
        .unwrap_or_else(|e| panic!("no response: {e}\n--- stderr:\n{}", gw.stderr()))
}

fn exchange(s: &Setup, request: &[u8]) -> Response {
    let mut c = RawConn::connect(s.gw.addr(LISTENER));
    c.send(request).expect("send");
    c.read_response()
        .unwrap_or_else(|e| panic!("no response: {e}\n--- stderr:\n{}", s.gw.stderr()))
}

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[test]
fn an_absolute_form_target_goes_upstream_in_origin_form_with_its_own_host() {
    let s = Setup::plain(|c| c);
    let r = exchange(
        &s,
        b"GET http://orders.mesh/headers?x=1 HTTP/1.1\r\nHost: somewhere.else\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let head = text(&r);
    assert!(head.starts_with("GET /headers?x=1 HTTP/1.1\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("host: orders.mesh\r\n"),
        "{head}"
    );
    assert!(!head.contains("somewhere.else"), "{head}");
}

#[test]
fn a_prefix_rewrite_sees_the_path_of_an_absolute_form_target() {
    let (dir, up) = (TempDir::new(), Upstream::start("origin"));
    let gw = gateway_with_route(
        &dir,
        &up,
        &format!(
            "[[routes]]\nlistener = \"{LISTENER}\"\ncluster = \"backend\"\nprefix_rewrite = \"/\"\n\
             [routes.match]\npath_prefix = \"/api/\""
        ),
    );
    let r = raw(
        &gw,
        b"GET http://e2e/api/headers HTTP/1.1\r\nHost: e2e\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        text(&r).starts_with("GET /headers HTTP/1.1\r\n"),
        "{}",
        text(&r)
    );
}

#[test]
fn a_redirect_of_an_absolute_form_request_has_a_correct_location() {
    let (dir, up) = (TempDir::new(), Upstream::start("origin"));
    let gw = gateway_with_route(
        &dir,
        &up,
        &format!(
            "[[routes]]\nlistener = \"{LISTENER}\"\n\
             [routes.redirect]\nstatus = 308\nhost = \"new.example\""
        ),
    );
    let r = raw(
        &gw,
        b"GET http://old.example/a/b?q=1 HTTP/1.1\r\nHost: old.example\r\n\r\n",
    );
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some("http://new.example/a/b?q=1"),
        "{r:?}"
    );
}

#[test]
fn a_client_connection_header_cannot_remove_what_the_route_adds() {
    let s = Setup::plain(|c| {
        c.route_extra("[routes.request_headers]\nadd = { \"x-tenant\" = \"blue\" }\n")
    });
    let r = exchange(
        &s,
        b"GET /headers HTTP/1.1\r\nHost: e2e\r\nConnection: x-tenant, x-forwarded-for, x-mine\r\nx-mine: 1\r\n\r\n",
    );
    let head = text(&r).to_ascii_lowercase();
    assert!(head.contains("x-tenant: blue\r\n"), "{head}");
    assert!(head.contains("x-forwarded-for: 127.0.0.1\r\n"), "{head}");
    assert!(
        !head.contains("x-mine"),
        "the client's own nominated field goes: {head}"
    );
}

#[test]
fn an_http_1_0_client_never_gets_chunked_framing() {
    // The request goes upstream as HTTP/1.0; an upstream that answers
    // chunked anyway gets the client a 502, not bytes it cannot frame.
    let origin = Scripted::start(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    let s = Setup::plain(|mut c| {
        c.endpoints = vec![origin.addr()];
        c
    });
    let mut c = RawConn::connect(s.gw.addr(LISTENER));
    c.send(b"GET /x HTTP/1.0\r\n\r\n").expect("send");
    let got = c.read_to_close(READ_TIMEOUT);
    let t = got.text();
    assert!(t.starts_with("HTTP/1.1 502 "), "{t}");
    assert!(!t.to_ascii_lowercase().contains("transfer-encoding"), "{t}");
    assert!(t.contains("bad_response"), "{t}");
    // An HTTP/1.1 client gets the chunked answer as it is.
    let r = exchange(&s, b"GET /x HTTP/1.1\r\nHost: e2e\r\n\r\n");
    assert_eq!(r.status, 200);
}

#[test]
fn header_names_with_underscores_are_dropped_by_default_or_refused_or_allowed() {
    let request = b"GET /headers HTTP/1.1\r\nHost: e2e\r\nx_forwarded_client_cert: By=spiffe://evil\r\nX_Tenant: blue\r\n\r\n";
    let up = Upstream::start("origin");
    let dir = TempDir::new();
    let dropping = gateway(&dir, &up, "", &catch_all());
    let r = raw(&dropping, request);
    assert_eq!(r.status, 200);
    assert!(!text(&r).contains('_'), "{}", text(&r));
    let dir = TempDir::new();
    let refusing = gateway(
        &dir,
        &up,
        "headers_with_underscores = \"reject\"",
        &catch_all(),
    );
    let r = raw(&refusing, request);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.header("x-meshgate-error"), Some("bad_request"));
    let dir = TempDir::new();
    let allowing = gateway(
        &dir,
        &up,
        "headers_with_underscores = \"allow\"",
        &catch_all(),
    );
    let r = raw(&allowing, request);
    assert!(text(&r).contains("X_Tenant: blue\r\n"), "{}", text(&r));
    assert_eq!(
        up.served(),
        2,
        "the refused request never reached the origin"
    );
}

#[test]
fn a_request_trailer_naming_a_gateway_owned_field_never_reaches_the_origin() {
    let s = Setup::plain(|c| c);
    let mut c = RawConn::connect(s.gw.addr(LISTENER));
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\nX-Forwarded-For: 10.9.9.9\r\n\r\n",
    )
    .expect("send");
    let got = c.read_to_close(READ_TIMEOUT);
    assert!(got.text().starts_with("HTTP/1.1 400 "), "{}", got.text());
    s.settle();
    assert_eq!(
        s.up.served(),
        0,
        "the origin took the request: {:?}",
        s.up.requests()
    );
    // Other trailers pass.
    let r = exchange(
        &s,
        b"POST /echo HTTP/1.1\r\nHost: e2e\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n",
    );
    assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
}

#[test]
fn paths_are_normalised_before_routing_and_the_normal_path_goes_upstream() {
    // Only /public/ is routed; an attempt to reach /private/ by dot
    // segments or escapes must be routed as what it really names.
    let (dir, up) = (TempDir::new(), Upstream::start("origin"));
    let route = format!(
        "[[routes]]\nlistener = \"{LISTENER}\"\ncluster = \"backend\"\nprefix_rewrite = \"/\"\n\
         [routes.match]\npath_prefix = \"/public/\""
    );
    let gw = gateway(&dir, &up, "", &route);
    let r = raw(
        &gw,
        b"GET /public/./x/../headers?q=1 HTTP/1.1\r\nHost: e2e\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        text(&r).starts_with("GET /headers?q=1 HTTP/1.1\r\n"),
        "{}",
        text(&r)
    );
    let r = raw(&gw, b"GET /%70ublic//headers HTTP/1.1\r\nHost: e2e\r\n\r\n");
    assert_eq!(
        r.status, 200,
        "an escaped unreserved byte is the byte: {r:?}"
    );
    // Leaving /public/ by dot segments is leaving the route.
    let r = raw(
        &gw,
        b"GET /public/../private/x HTTP/1.1\r\nHost: e2e\r\n\r\n",
    );
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.header("x-meshgate-error"), Some("no_route"));
    // Above the root, or a broken escape: 400.
    for bad in [
        &b"GET /public/../../etc/passwd HTTP/1.1\r\nHost: e2e\r\n\r\n"[..],
        b"GET /public/%zz HTTP/1.1\r\nHost: e2e\r\n\r\n",
    ] {
        let r = raw(&gw, bad);
        assert_eq!(r.status, 400, "{}: {r:?}", String::from_utf8_lossy(bad));
    }
    assert_eq!(up.served(), 2);
    // Encoded slashes: kept by default, refused when configured.
    let dir = TempDir::new();
    let strict = gateway(&dir, &up, "encoded_slashes = \"reject\"", &catch_all());
    let r = raw(&strict, b"GET /a%2Fb HTTP/1.1\r\nHost: e2e\r\n\r\n");
    assert_eq!(r.status, 400, "{r:?}");
    let dir = TempDir::new();
    let off = gateway(&dir, &up, "normalize_path = false", &catch_all());
    let r = raw(&off, b"GET /x/../headers HTTP/1.1\r\nHost: e2e\r\n\r\n");
    assert_eq!(
        r.status, 404,
        "left alone, the origin gets /x/../headers: {r:?}"
    );
}

#[test]
fn one_request_id_goes_upstream_the_callers_only_when_allowed() {
    let request = b"GET /headers HTTP/1.1\r\nHost: e2e\r\nX-Request-Id: mine\r\nX-Request-Id: also-mine\r\n\r\n";
    let ids = |r: &Response| -> Vec<String> { harness::fields_in_head(&r.body, "x-request-id") };
    let up = Upstream::start("origin");
    // Default ("mesh"): a caller without a SPIFFE identity (plaintext here)
    // gets a fresh id.
    let dir = TempDir::new();
    let gw = gateway(&dir, &up, "", &catch_all());
    let got = ids(&raw(&gw, request));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0] != "mine" && got[0] != "also-mine", "{got:?}");
    let dir = TempDir::new();
    let gw = gateway(&dir, &up, "request_id = \"keep\"", &catch_all());
    assert_eq!(ids(&raw(&gw, request)), ["mine"]);
    let dir = TempDir::new();
    let gw = gateway(&dir, &up, "request_id = \"fresh\"", &catch_all());
    let got = ids(&raw(&gw, request));
    assert_eq!(got.len(), 1);
    assert_ne!(got[0], "mine");
}
