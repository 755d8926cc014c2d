"""A gRPC origin for the gateway's tests, on Python's grpcio (the real
gRPC stack), with generic handlers on raw bytes (no code generation).

Usage: grpc_server.py [--tls CERT KEY CA]

Listens on 127.0.0.1, port chosen by the kernel, plaintext HTTP/2 (h2c)
or, with --tls, TLS requiring a client certificate from CA. Prints the
port on the first line of stdout, then serves until killed.

Methods of service `test.Echo`:
  Unary         replies with the request reversed; echoes the caller's
                `x-caller` metadata as initial metadata `x-echo-caller`,
                sends trailing metadata `x-served-by: grpcio`, and
                reports the identity in the gateway's client certificate
                (`x-peer-identity`: its SPIFFE ID, or `none` in plaintext).
  Fail          aborts with INVALID_ARGUMENT, details "no such thing".
  ServerStream  replies with request[0] messages, message i = bytes([i]).
  ClientStream  replies with the concatenation of every request message.
  Bidi          answers each message with it reversed.
  Slow          sleeps 3 s, then replies (for deadlines: the caller's
                grpc-timeout, passed on by the gateway, ends it first).
  Flaky         fails with UNAVAILABLE every other call (the 1st, 3rd, …),
                replies "ok N" to the others: a retry on `unavailable`
                turns each failure into a success.
"""

import sys
import time
from concurrent import futures

import grpc


def unary(request, context):
    meta = dict(context.invocation_metadata())
    initial = []
    if "x-caller" in meta:
        initial.append(("x-echo-caller", meta["x-caller"]))
    context.send_initial_metadata(initial)
    auth = context.auth_context()
    names = auth.get("peer_spiffe_id") or auth.get("x509_subject_alternative_name") or [b"none"]
    context.set_trailing_metadata(
        [("x-served-by", "grpcio"), ("x-peer-identity", names[0].decode())]
    )
    return request[::-1]


def fail(request, context):
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no such thing")


def server_stream(request, context):
    for i in range(request[0] if request else 0):
        yield bytes([i])


def client_stream(request_iterator, context):
    return b"".join(request_iterator)


def bidi(request_iterator, context):
    for message in request_iterator:
        yield message[::-1]


def slow(request, context):
    time.sleep(3)
    return request


flaky_calls = [0]


def flaky(request, context):
    flaky_calls[0] += 1
    n = flaky_calls[0]
    if n % 2 == 1:
        context.abort(grpc.StatusCode.UNAVAILABLE, f"call {n} fails")
    return f"ok {n}".encode()


def main():
    identity = lambda b: b
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, identity, identity),
        "Fail": grpc.unary_unary_rpc_method_handler(fail, identity, identity),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, identity, identity),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, identity, identity),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi, identity, identity),
        "Slow": grpc.unary_unary_rpc_method_handler(slow, identity, identity),
        "Flaky": grpc.unary_unary_rpc_method_handler(flaky, identity, identity),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    if len(sys.argv) == 5 and sys.argv[1] == "--tls":
        read = lambda p: open(p, "rb").read()
        cert, key, ca = sys.argv[2:5]
        creds = grpc.ssl_server_credentials(
            [(read(key), read(cert))], root_certificates=read(ca), require_client_auth=True
        )
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
