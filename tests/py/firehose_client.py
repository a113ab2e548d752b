#!/usr/bin/env python3
"""Real clients of lakehose's front door, for the integration tests and the
kill -9 bench. Prints JSON on stdout.

usage: firehose_client.py ENDPOINT KEY SECRET errors
       firehose_client.py ENDPOINT KEY SECRET load CLIENTS BATCHES PREFIX [--until-failure] [--retries N]
       firehose_client.py ENDPOINT - - events USER PASSWORD TOKEN

errors: what the door answers to what Firehose refuses (and to what it takes).
load:   CLIENTS threads each send BATCHES PutRecordBatch calls of 50 records
        (ids PREFIX-<client>-<batch>-<i>); prints the ids acknowledged and
        those whose answer never came or failed.
events: /v1/events with basic auth, a bearer token, gzip, invalid records.
"""
import base64, gzip, json, sys, threading, time, urllib.request, urllib.error

import boto3, botocore.config, botocore.exceptions

endpoint, key, secret, cmd = sys.argv[1:5]


def client(secret=secret, retries=1):
    return boto3.client("firehose", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=botocore.config.Config(retries={"max_attempts": retries, "mode": "standard"},
                                                      connect_timeout=5, read_timeout=60))


def rec(rid, pad=0):
    return json.dumps({"event_id": rid, "timestamp": "2026-12-06T10:00:00Z", "event_type": "view",
                       "user_id": 1, "session_id": "x" * pad}).encode()


def code(fn):
    try:
        fn()
        return "ok"
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]


if cmd == "errors":
    f = client()
    out = {}
    out["put_record"] = f.put_record(DeliveryStreamName="events", Record={"Data": rec("err-ok-0")})["RecordId"]
    r = f.put_record_batch(DeliveryStreamName="events", Records=[{"Data": rec(f"err-ok-{i}")} for i in range(1, 100)])
    out["batch_failed"] = r["FailedPutCount"]
    out["batch_ids"] = len({x["RecordId"] for x in r["RequestResponses"]})
    out["wrong_secret"] = code(lambda: client("not-the-secret").put_record(DeliveryStreamName="events", Record={"Data": rec("err-no-1")}))
    out["unknown_stream"] = code(lambda: f.put_record(DeliveryStreamName="nope", Record={"Data": rec("err-no-2")}))
    out["records_501"] = code(lambda: f.put_record_batch(DeliveryStreamName="events", Records=[{"Data": rec(f"err-no-3-{i}")} for i in range(501)]))
    big = [{"Data": rec(f"err-no-4-{i}", 1000 * 1024 - 200)} for i in range(5)]  # 5 x ~1000 KiB > 4 MiB
    out["call_over_4mib"] = code(lambda: f.put_record_batch(DeliveryStreamName="events", Records=big))
    out["record_1001kib"] = code(lambda: f.put_record(DeliveryStreamName="events", Record={"Data": rec("err-no-5", 1001 * 1024)}))
    d = f.describe_delivery_stream(DeliveryStreamName="events")["DeliveryStreamDescription"]
    out["describe"] = [d["DeliveryStreamName"], d["DeliveryStreamStatus"], d["DeliveryStreamType"]]
    out["describe_unknown"] = code(lambda: f.describe_delivery_stream(DeliveryStreamName="nope"))
    print(json.dumps(out))

elif cmd == "load":
    clients, batches, prefix = int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
    until_failure = "--until-failure" in sys.argv
    retries = int(sys.argv[sys.argv.index("--retries") + 1]) if "--retries" in sys.argv else 1
    acked, unsure, refused, lock = [], [], [], threading.Lock()
    latencies = []

    def run(c):
        f = client(retries=retries)
        for b in range(batches):
            ids = [f"{prefix}-{c}-{b}-{i}" for i in range(50)]
            t0 = time.perf_counter()
            try:
                r = f.put_record_batch(DeliveryStreamName="events", Records=[{"Data": rec(i)} for i in ids])
            except Exception as e:  # connection reset by kill -9, 503 after retries
                with lock:
                    if isinstance(e, botocore.exceptions.ClientError) and e.response["Error"]["Code"] == "ServiceUnavailableException":
                        refused.extend(ids)
                    else:
                        unsure.extend(ids)
                if until_failure:
                    return
                time.sleep(0.05)
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)
                for rid, x in zip(ids, r["RequestResponses"]):
                    (acked if "RecordId" in x else refused).append(rid)
    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    print(json.dumps({"acked": acked, "unsure": unsure, "refused": refused,
                      "p50": latencies[len(latencies) // 2] if latencies else None}))

elif cmd == "events":
    user, password, token = sys.argv[5:8]
    url = endpoint + "/v1/events"

    def post(body, headers):
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    basic = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    out = {}
    ndjson = b"\n".join(rec(f"ev-nd-{i}") for i in range(10)) + b"\n"
    out["none"] = post(ndjson, {})
    out["wrong_password"] = post(ndjson, {"Authorization": "Basic " + base64.b64encode(f"{user}:nope".encode()).decode()})
    out["unknown_user"] = post(ndjson, {"Authorization": "Basic " + base64.b64encode(b"nobody:nope").decode()})
    out["wrong_token"] = post(ndjson, {"Authorization": "Bearer nope"})
    out["ndjson"] = post(ndjson, basic)
    arr = json.dumps([json.loads(rec(f"ev-arr-{i}")) for i in range(5)]).encode()
    out["array_bearer"] = post(arr, {"Authorization": f"Bearer {token}"})
    out["one_object"] = post(rec("ev-one-0"), basic)
    out["gzip"] = post(gzip.compress(b"\n".join(rec(f"ev-gz-{i}") for i in range(7))), {**basic, "Content-Encoding": "gzip"})
    mixed = b"\n".join([rec("ev-mix-0"), b'{"event_id":"ev-mix-1"}', b'{"event_id":', rec("ev-mix-3")])
    out["mixed"] = post(mixed, basic)
    out["all_bad"] = post(b'{"event_id":"ev-bad-0"}\n[1,2]\n', basic)
    out["not_json_array"] = post(b'[{"a":1},', basic)
    print(json.dumps(out))
