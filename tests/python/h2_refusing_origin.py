"""An HTTP/2 (h2c) origin that refuses work the way real servers do when
they restart or shed load, built on the `h2` package (a sans-IO HTTP/2
state machine), for the gateway's resend-on-unprocessed tests.

Usage: h2_refusing_origin.py MODE

Listens on 127.0.0.1 (port chosen by the kernel, printed on the first
line of stdout), one connection at a time, forever:

refuse-first: the first stream this process receives is reset with
  REFUSED_STREAM; every later one is answered 200.
goaway-first: the first request this process receives is answered with
  GOAWAY(last_stream_id=0, NO_ERROR) — "I processed nothing, go
  elsewhere" — and its connection is closed once that is written.

Every answered request counts; each response body says how many requests
this process answered (`served N`) and how many it refused (`refused M`).
"""

import socket
import sys
import threading

import h2.config
import h2.connection
import h2.errors
import h2.events

state = {"served": 0, "refused": 0}
lock = threading.Lock()


def serve(sock, mode):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    bodies = {}
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    sid = event.stream_id
                    with lock:
                        first = state["refused"] == 0
                        if first:
                            state["refused"] += 1
                    if first:
                        if mode == "refuse-first":
                            conn.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
                        else:
                            conn.close_connection(
                                error_code=h2.errors.ErrorCodes.NO_ERROR, last_stream_id=0
                            )
                            sock.sendall(conn.data_to_send())
                            return
                        continue
                    bodies[sid] = True
                elif isinstance(event, h2.events.StreamEnded) and bodies.pop(event.stream_id, None):
                    answer(conn, event.stream_id)
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
    finally:
        sock.close()


def answer(conn, sid):
    with lock:
        state["served"] += 1
        body = f"served {state['served']} refused {state['refused']}\n".encode()
    conn.send_headers(
        sid, [(":status", "200"), ("content-length", str(len(body)))], end_stream=False
    )
    conn.send_data(sid, body, end_stream=True)


def main():
    mode = sys.argv[1]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print(listener.getsockname()[1], flush=True)
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=serve, args=(sock, mode), daemon=True).start()


if __name__ == "__main__":
    main()
