"""Every kind of gRPC call through the gateway with Python's grpcio over
mTLS, against tests/python/grpc_server.py behind it.

Usage: grpc_e2e.py HOST:PORT CA CERT KEY [flaky N]

With `flaky N`: only N calls of /test.Echo/Flaky, one after another.

Prints one JSON object: per call, what the client saw (reply bytes in hex,
status code name, details, initial and trailing metadata).
"""

import json
import queue
import sys

import grpc


def outcome(fn):
    try:
        return fn()
    except grpc.RpcError as e:
        return {
            "code": e.code().name,
            "details": e.details(),
            "trailing": dict(e.trailing_metadata() or ()),
        }


def main():
    target, ca, cert, key = sys.argv[1:5]
    read = lambda p: open(p, "rb").read()
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert)
    )
    options = [("grpc.ssl_target_name_override", "localhost")]
    out = {}
    with grpc.secure_channel(target, creds, options=options) as channel:
        if len(sys.argv) == 7 and sys.argv[5] == "flaky":
            flaky = channel.unary_unary("/test.Echo/Flaky")
            out["flaky"] = [
                outcome(lambda: {"code": "OK", "reply": flaky(b"", timeout=10).decode()})
                for _ in range(int(sys.argv[6]))
            ]
            print(json.dumps(out))
            return
        unary = channel.unary_unary("/test.Echo/Unary")

        def call_unary():
            reply, call = unary.with_call(
                b"\x01\x02\x03", metadata=[("x-caller", "py-client")], timeout=10
            )
            return {
                "code": call.code().name,
                "reply": reply.hex(),
                "initial": dict(call.initial_metadata()),
                "trailing": dict(call.trailing_metadata()),
            }

        out["unary"] = outcome(call_unary)
        out["fail"] = outcome(lambda: channel.unary_unary("/test.Echo/Fail")(b"x", timeout=10))
        out["server_stream"] = outcome(
            lambda: {
                "code": "OK",
                "replies": [m.hex() for m in channel.unary_stream("/test.Echo/ServerStream")(bytes([5]), timeout=10)],
            }
        )
        out["client_stream"] = outcome(
            lambda: {
                "code": "OK",
                "reply": channel.stream_unary("/test.Echo/ClientStream")(
                    iter([b"ab", b"cd", b"ef"]), timeout=10
                ).hex(),
            }
        )
        out["bidi"] = outcome(
            lambda: {
                "code": "OK",
                "replies": [
                    m.hex()
                    for m in channel.stream_stream("/test.Echo/Bidi")(iter([b"\x01\x02", b"\x03\x04"]), timeout=10)
                ],
            }
        )
        # Ping-pong: each message waits for the reply to the one before,
        # which needs the gateway to pass the reply while the request
        # stream is still open (full duplex).
        def pingpong():
            replied = queue.Queue()

            def requests():
                for i in range(3):
                    yield bytes([i])
                    replied.get(timeout=5)

            call = channel.stream_stream("/test.Echo/Bidi")(requests(), timeout=10)
            replies = []
            for message in call:
                replies.append(message.hex())
                replied.put(True)
            return {"code": "OK", "replies": replies}

        out["pingpong"] = outcome(pingpong)
        out["deadline"] = outcome(lambda: channel.unary_unary("/test.Echo/Slow")(b"x", timeout=0.5))
        # A large message: more than one stream window's worth each way.
        big = bytes(range(256)) * 2048
        out["large"] = outcome(
            lambda: {"code": "OK", "same": unary(big, timeout=10) == big[::-1]}
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
