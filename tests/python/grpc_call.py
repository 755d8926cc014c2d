"""Unary gRPC calls through the gateway with Python's grpcio (the real
gRPC stack, over mTLS), with generic methods on raw bytes (no code
generation), one after another on one channel.

Usage: grpc_call.py HOST:PORT CA CERT KEY METHOD [METHOD ...]

Prints one JSON line: a list with, per call, the status code's name, its
details, and the `x-meshgate-error` trailing metadata when present.
"""

import json
import sys

import grpc


def main():
    target, ca, cert, key = sys.argv[1:5]
    methods = sys.argv[5:]
    read = lambda p: open(p, "rb").read()
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert)
    )
    options = [("grpc.ssl_target_name_override", "localhost")]
    results = []
    with grpc.secure_channel(target, creds, options=options) as channel:
        for method in methods:
            call = channel.unary_unary(method)
            try:
                reply = call(b"\x01\x02", timeout=10)
                results.append({"code": "OK", "details": "", "reply": reply.hex()})
            except grpc.RpcError as e:
                trailing = dict(e.trailing_metadata() or ())
                results.append(
                    {
                        "code": e.code().name,
                        "details": e.details(),
                        "meshgate_error": trailing.get("x-meshgate-error"),
                    }
                )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
