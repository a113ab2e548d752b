#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of moto_server, for tests.

Every request is forwarded to the upstream (moto) unchanged, except that
some are answered with the error AWS sends under load instead, by rule:

  --rule 'kinesis:GetRecords:3:ProvisionedThroughputExceededException'
      every 3rd GetRecords call gets a 400 with that error type (JSON
      protocol: the `__type` body field and the x-amzn-ErrorType header)
  --rule 'kinesis:GetRecords:7:ExpiredIteratorException'
  --rule 'dynamodb:UpdateItem:5:InternalServerError'      (a 500)
  --rule 's3:PUT:4:SlowDown'                              (a 503, S3 XML)
  --rule 'glue:BatchCreatePartition:1:InternalServiceException:4'
      the first 4 calls get a 500, later ones pass (an optional 5th field
      caps how many times a rule is injected)

The n-th call counts per rule, and an injected call is not forwarded (the
upstream never sees it, as with a real throttle). GET /__faults on the
proxy returns {rule: times injected} as JSON.

usage: fault_proxy.py --upstream http://127.0.0.1:PORT --port PORT --rule R [--rule R ...]
"""
import argparse
import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

STATUS = {"InternalServerError": 500, "InternalServiceException": 500, "ServiceUnavailable": 503, "SlowDown": 503}


class Rule:
    def __init__(self, text):
        self.text = text
        parts = text.split(":")
        self.service, self.op, every, self.error = parts[:4]
        self.every = int(every)
        self.limit = int(parts[4]) if len(parts) > 4 else None
        self.calls = 0
        self.injected = 0

    def matches(self, service, op):
        return self.service == service and self.op == op


def classify(method, headers):
    """(service, operation) of a request: JSON APIs name it in X-Amz-Target; S3 by method."""
    target = headers.get("X-Amz-Target", "")
    if target.startswith("Kinesis_"):
        return "kinesis", target.split(".", 1)[1]
    if target.startswith("DynamoDB_"):
        return "dynamodb", target.split(".", 1)[1]
    if target.startswith("AWSGlue."):
        return "glue", target.split(".", 1)[1]
    if target:
        return "other", target
    auth = headers.get("Authorization", "")
    if "/s3/aws4_request" in auth:
        return "s3", method
    return "other", method


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rule", action="append", default=[])
    a = ap.parse_args()
    up = urlparse(a.upstream)
    rules = [Rule(r) for r in a.rule]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status, headers, body):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def handle_any(self):
            if self.path == "/__faults":
                with lock:
                    body = json.dumps({r.text: r.injected for r in rules}).encode()
                return self.reply(200, [("Content-Type", "application/json")], body)
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            service, op = classify(self.command, self.headers)
            hit = None
            with lock:
                for r in rules:
                    if r.matches(service, op):
                        r.calls += 1
                        if r.calls % r.every == 0 and (r.limit is None or r.injected < r.limit):
                            r.injected += 1
                            hit = r
                            break
            if hit is not None:
                status = STATUS.get(hit.error, 400)
                if service == "s3":
                    xml = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{hit.error}</Code><Message>injected</Message></Error>'
                    return self.reply(status, [("Content-Type", "application/xml")], xml.encode())
                err = json.dumps({"__type": hit.error, "message": "injected by fault_proxy"}).encode()
                return self.reply(status, [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", hit.error)], err)
            conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive", "transfer-encoding")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                skip = ("connection", "keep-alive", "transfer-encoding") + (() if self.command == "HEAD" else ("content-length",))
                out = [(k, v) for k, v in resp.getheaders() if k.lower() not in skip]
                self.send_response(resp.status)
                for k, v in out:
                    self.send_header(k, v)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            finally:
                conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
