#!/usr/bin/env python3
"""A trace collector for the end-to-end tests: takes what meshgate posts and
decodes it with other people's code.

  POST /v1/traces     OTLP/HTTP. application/x-protobuf is decoded with the
                      official opentelemetry-proto package
                      (ExportTraceServiceRequest); application/json is read
                      with the OTLP JSON mapping (hex ids) and then parsed
                      into the same protobuf message by google.protobuf's
                      json_format, so both encodings meet the same schema.
  POST /api/v2/spans  Zipkin v2 JSON, checked field by field against the
                      published v2 span shape (zipkin2-api.yaml).

Every decoded span is appended to --out as one JSON line. A body that does
not decode gets 400 and an {"error": ...} line. --fail-first N answers the
first N posts with 503 (to exercise the exporter's retries). Prints
"listening PORT" once it accepts.
"""

import argparse
import base64
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

HEX16 = re.compile(r"^[0-9a-f]{16}$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
KINDS = {"CLIENT", "SERVER", "PRODUCER", "CONSUMER"}

lock = threading.Lock()
posts = 0


def any_value(v):
    which = v.WhichOneof("value")
    return getattr(v, which) if which else None


def otlp_spans(request, encoding):
    out = []
    for rs in request.resource_spans:
        resource = {kv.key: any_value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append({
                    "format": encoding,
                    "service": resource.get("service.name"),
                    "scope": ss.scope.name,
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "name": s.name,
                    "kind": s.kind,
                    "start": s.start_time_unix_nano,
                    "end": s.end_time_unix_nano,
                    "attributes": {kv.key: any_value(kv.value) for kv in s.attributes},
                    "status_code": s.status.code,
                    "status_message": s.status.message,
                })
    return out


def hex_ids_to_base64(doc):
    """OTLP JSON carries ids as hex; protobuf's JSON parser wants base64."""
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for s in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in s:
                        s[key] = base64.b64encode(bytes.fromhex(s[key])).decode()
    return doc


def check_zipkin(doc):
    if not isinstance(doc, list):
        raise ValueError("a Zipkin v2 body is a JSON array of spans")
    out = []
    for s in doc:
        if not isinstance(s, dict):
            raise ValueError("a span is an object")
        if not (HEX16.match(s.get("traceId", "")) or HEX32.match(s.get("traceId", ""))):
            raise ValueError(f"traceId {s.get('traceId')!r}")
        if not HEX16.match(s.get("id", "")):
            raise ValueError(f"id {s.get('id')!r}")
        if "parentId" in s and not HEX16.match(s["parentId"]):
            raise ValueError(f"parentId {s['parentId']!r}")
        if s.get("kind") not in KINDS:
            raise ValueError(f"kind {s.get('kind')!r}")
        for key in ("timestamp", "duration"):
            if not isinstance(s.get(key), int) or s[key] < 1:
                raise ValueError(f"{key} {s.get(key)!r} must be a positive integer (microseconds)")
        if not isinstance(s.get("name"), str):
            raise ValueError("name must be a string")
        local = s.get("localEndpoint", {})
        if not isinstance(local.get("serviceName"), str):
            raise ValueError("localEndpoint.serviceName must be a string")
        remote = s.get("remoteEndpoint", {})
        if not ("ipv4" in remote or "ipv6" in remote) or not isinstance(remote.get("port"), int):
            raise ValueError(f"remoteEndpoint {remote!r}")
        tags = s.get("tags", {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
            raise ValueError("tags must map strings to strings")
        known = {"traceId", "id", "parentId", "name", "kind", "timestamp", "duration",
                 "localEndpoint", "remoteEndpoint", "tags", "annotations", "debug", "shared"}
        unknown = set(s) - known
        if unknown:
            raise ValueError(f"fields not in the v2 span: {sorted(unknown)}")
        out.append({
            "format": "zipkin",
            "service": local["serviceName"],
            "trace_id": s["traceId"],
            "span_id": s["id"],
            "parent_span_id": s.get("parentId", ""),
            "name": s["name"],
            "kind": s["kind"],
            "start": s["timestamp"],
            "duration": s["duration"],
            "attributes": tags,
        })
    return out


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", content_type="application/json"):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        global posts
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with lock:
            posts += 1
            failing = posts <= self.server.fail_first
            with open(self.server.out + ".posts", "a") as f:
                f.write(f"{self.path} {self.headers.get('content-type')}\n")
        if failing:
            return self.reply(503, b"failing on purpose")
        ctype = self.headers.get("content-type", "")
        try:
            if self.path == "/v1/traces" and ctype == "application/x-protobuf":
                spans = otlp_spans(ExportTraceServiceRequest.FromString(body), "otlp-protobuf")
                answer = (ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")
            elif self.path == "/v1/traces" and ctype == "application/json":
                doc = hex_ids_to_base64(json.loads(body))
                request = json_format.ParseDict(doc, ExportTraceServiceRequest())
                spans = otlp_spans(request, "otlp-json")
                answer = (b"{}", "application/json")
            elif self.path == "/api/v2/spans" and ctype == "application/json":
                spans = check_zipkin(json.loads(body))
                answer = (b"", "application/json")
            else:
                raise ValueError(f"no collector at {self.path} for {ctype}")
        except Exception as e:  # anything that does not decode is the test's failure
            with lock, open(self.server.out, "a") as f:
                f.write(json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n")
            return self.reply(400, str(e).encode())
        with lock, open(self.server.out, "a") as f:
            for s in spans:
                f.write(json.dumps(s) + "\n")
        self.reply(200, *answer)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--fail-first", type=int, default=0)
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.out = args.out
    server.fail_first = args.fail_first
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
