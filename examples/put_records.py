#!/usr/bin/env python3
"""Sends a few records to `lakehose run --config examples/direct-put.toml`
with boto3's own firehose client, as a Firehose producer would."""
import json, boto3

f = boto3.client("firehose", endpoint_url="http://127.0.0.1:4573", region_name="us-east-1",
                 aws_access_key_id="AKIDLOCALONLY", aws_secret_access_key="local-only-secret-do-not-use-elsewhere")
rec = lambda i: json.dumps({"event_id": f"direct-{i}", "timestamp": "2026-12-06T10:00:00Z", "event_type": "view", "user_id": i}).encode()
print(f.put_record(DeliveryStreamName="events", Record={"Data": rec(0)}))
r = f.put_record_batch(DeliveryStreamName="events", Records=[{"Data": rec(i)} for i in range(1, 101)])
print("batch: FailedPutCount", r["FailedPutCount"], "of", len(r["RequestResponses"]))
