"""Reads every record of a topic with librdkafka (confluent-kafka), partitions
assigned by hand, and prints one JSON line per record: partition, offset,
key, value (base64; null for tombstones), headers, timestamp.

usage: kafka_read.py --bootstrap HOST:PORT --topic T --expect N
(stops once N records are read; tombstones count)
"""
import argparse, base64, json, sys
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--expect", type=int, required=True)
    a = ap.parse_args()
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "kafka-read", "enable.auto.commit": False,
                  "isolation.level": "read_committed", "fetch.message.max.bytes": 8000000})
    parts = c.list_topics(a.topic, timeout=30).topics[a.topic].partitions
    c.assign([TopicPartition(a.topic, p, OFFSET_BEGINNING) for p in parts])
    n = 0
    b64 = lambda b: None if b is None else base64.b64encode(b).decode()
    while n < a.expect:
        m = c.poll(10)
        if m is None:
            sys.exit(f"only {n} of {a.expect} records")
        if m.error():
            continue
        print(json.dumps({"p": m.partition(), "o": m.offset(), "k": b64(m.key()), "v": b64(m.value()),
                          "h": {k: b64(v) for k, v in (m.headers() or [])}, "t": m.timestamp()[1]}))
        n += 1


if __name__ == "__main__":
    main()
