"""Produces NDJSON lines to a Kafka topic with librdkafka (confluent-kafka).

usage: kafka_put.py FILE --bootstrap HOST:PORT --topic T [--create N]
                    [--compression none|gzip|snappy|lz4|zstd] [--batch N] [--pause S]
                    [--tombstone-every K] [--bytes-per-sec B]

Line i goes to partition i % N (N from --create, else the topic's count),
keyed "k<i>" with header "line" = "<i>"; every K-th line is followed by a
tombstone (null value, key "gone<i>"). Delivery is checked: a line that
fails is produced again until the broker acknowledges it. Prints the
number of records acknowledged.
"""
import argparse, sys, time
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--create", type=int, default=0)
    ap.add_argument("--compression", default="none")
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--pause", type=float, default=0.0)
    ap.add_argument("--tombstone-every", type=int, default=0)
    ap.add_argument("--tls-ca", help="connect with TLS, trusting this CA file")
    a = ap.parse_args()
    conn = {"bootstrap.servers": a.bootstrap}
    if a.tls_ca:
        conn.update({"security.protocol": "SSL", "ssl.ca.location": a.tls_ca})
    if a.create:
        admin = AdminClient(conn)
        fs = admin.create_topics([NewTopic(a.topic, num_partitions=a.create, replication_factor=1)])
        for f in fs.values():
            f.result(30)
    p = Producer({**conn, "compression.type": a.compression, "linger.ms": 5,
                  "enable.idempotence": False, "acks": "all", "message.max.bytes": 8000000})
    parts = a.create or len(p.list_topics(a.topic, timeout=30).topics[a.topic].partitions)
    lines = [l for l in open(a.file, "rb").read().split(b"\n") if l]
    failed = []
    acked = [0]

    def report(err, msg):
        if err is not None:
            failed.append(msg)
        else:
            acked[0] += 1

    def send(i, line):
        p.produce(a.topic, value=line, key=f"k{i}".encode(), headers=[("line", str(i).encode())], partition=i % parts, on_delivery=report)
        if a.tombstone_every and i % a.tombstone_every == 0:
            p.produce(a.topic, value=None, key=f"gone{i}".encode(), partition=i % parts, on_delivery=report)

    for start in range(0, len(lines), a.batch):
        for i in range(start, min(start + a.batch, len(lines))):
            send(i, lines[i])
        p.flush(60)
        while failed:
            again = [(int(dict(m.headers() or [])["line"]), m.value()) for m in failed if m.value() is not None]
            failed.clear()
            time.sleep(0.2)
            for i, v in again:
                p.produce(a.topic, value=v, key=f"k{i}".encode(), headers=[("line", str(i).encode())], partition=i % parts, on_delivery=report)
            p.flush(60)
        if a.pause:
            time.sleep(a.pause)
    print(acked[0])


if __name__ == "__main__":
    sys.exit(main())
