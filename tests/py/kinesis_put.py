"""Puts NDJSON lines into a Kinesis stream, in order, from one thread.

usage: kinesis_put.py FILE --stream S --endpoint URL [--batch N] [--pause S]
                      [--aggregate K]  # KPL-aggregate K lines per record (aws-kinesis-agg)

One producer thread on purpose: moto loses records under concurrent
PutRecords. Failed entries of a PutRecords call are retried until they land.
Prints the number of Kinesis records put.
"""
import argparse, time, sys
import boto3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--stream", required=True)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--pause", type=float, default=0.0)
    ap.add_argument("--aggregate", type=int, default=0)
    a = ap.parse_args()
    k = boto3.client("kinesis", endpoint_url=a.endpoint, region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test")
    lines = [l for l in open(a.file, "rb").read().split(b"\n") if l]
    entries = []
    if a.aggregate:
        from aws_kinesis_agg.aggregator import RecordAggregator
        for i in range(0, len(lines), a.aggregate):
            agg = RecordAggregator()
            for j, l in enumerate(lines[i:i + a.aggregate]):
                agg.add_user_record(f"pk-{i}", l)
            pk, ehk, data = agg.clear_and_get().get_contents()
            entries.append({"Data": data, "PartitionKey": pk})
    else:
        entries = [{"Data": l, "PartitionKey": f"pk-{i}"} for i, l in enumerate(lines)]
    for i in range(0, len(entries), a.batch):
        todo = entries[i:i + a.batch]
        while todo:
            r = k.put_records(StreamName=a.stream, Records=todo)
            todo = [e for e, res in zip(todo, r["Records"]) if "ErrorCode" in res]
            if todo:
                time.sleep(0.2)
        if a.pause:
            time.sleep(a.pause)
    print(len(entries))


if __name__ == "__main__":
    sys.exit(main())
