#!/usr/bin/env python3
"""Seeded clickstream NDJSON generator (~600-byte records).

usage: gen_clickstream.py OUT --records N [--seed S] [--bad-every K] [--hours H]
                          [--event-types T] [--start 2026-11-21T00:00:00Z]

With --bad-every K, every K-th record is bad in a rotating way (malformed
JSON, wrong types, missing required fields, non-UTF-8, oversized); a bad
record's event_id starts with "bad-" and its kind is recorded in
OUT.bad.tsv (event_id, kind) so tests can check each one reached the
error prefix. --event-types sets how many distinct event_type values.
"""
import argparse, datetime, json, random, string

BAD_KINDS = ["missing_comma", "trailing_comma", "float_in_int", "string_in_number", "int_out_of_range",
             "missing_required", "null_required", "bad_timestamp", "not_utf8", "oversized", "not_object",
             "bad_decimal_places"]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--bad-every", type=int, default=0)
    ap.add_argument("--hours", type=int, default=3)
    ap.add_argument("--event-types", type=int, default=0)
    ap.add_argument("--start", default="2026-11-21T00:00:00Z")
    ap.add_argument("--id-prefix", default="e")
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    start = datetime.datetime.fromisoformat(a.start.replace("Z", "+00:00"))
    types = ["page_view", "click", "add_to_cart", "purchase", "search"]
    oses = [("ios", "17.1", "iPhone15,2"), ("android", "14", "Pixel 8"), ("windows", "11", None), ("macos", "14.1", None)]
    countries = [("DE", "Berlin", 52.52, 13.405), ("US", "Seattle", 47.61, -122.33), ("JP", "Tokyo", 35.68, 139.69),
                 ("BR", "São Paulo", -23.55, -46.63)]
    bad = []
    with open(a.out, "wb") as f:
        for i in range(a.records):
            ts = start + datetime.timedelta(seconds=rnd.randrange(a.hours * 3600), milliseconds=rnd.randrange(1000))
            et = f"type_{i % a.event_types:05d}" if a.event_types else rnd.choice(types)
            os_, ver, model = rnd.choice(oses)
            c = rnd.choice(countries)
            eid = f"{a.id_prefix}-{i:08d}-{rnd.getrandbits(32):08x}"
            rec = {
                "event_id": eid,
                "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
                "event_type": et,
                "user_id": rnd.randrange(1, 10_000_000),
                "session_id": "".join(rnd.choices(string.ascii_lowercase + string.digits, k=24)),
                "page": {"url": f"https://shop.example.com/p/{rnd.randrange(100000)}?ref=home&utm_source=newsletter",
                         "referrer": rnd.choice([None, "https://www.google.com/", "https://news.example.org/article/123"]),
                         "title": rnd.choice(["Home", "Running shoes – Men", "Cart", "Checkout", "Search results"])},
                "device": {"os": os_, "os_version": ver, "model": model},
                "geo": {"country": c[0], "city": c[1], "lat": c[2], "lon": c[3]},
                "properties": {"campaign": rnd.choice(["black_friday", "newsletter", "organic"]),
                               "ab_test": rnd.choice("AB"), "locale": rnd.choice(["de-DE", "en-US", "ja-JP"])},
                "tags": rnd.sample(["new", "returning", "mobile", "promo", "vip"], k=rnd.randrange(0, 4)),
                "duration_ms": rnd.randrange(0, 120000),
                "revenue": None if et != "purchase" and not a.event_types else round(rnd.uniform(1, 500), 2),
                "is_bot": rnd.random() < 0.02,
            }
            if a.bad_every and i % a.bad_every == a.bad_every - 1:
                kind = BAD_KINDS[(i // a.bad_every) % len(BAD_KINDS)]
                rec["event_id"] = eid = "bad-" + eid
                line = make_bad(kind, rec)
                bad.append((eid, kind))
            else:
                line = json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode()
            f.write(line + b"\n")
    if a.bad_every:
        with open(a.out + ".bad.tsv", "w") as f:
            for eid, kind in bad:
                f.write(f"{eid}\t{kind}\n")

def make_bad(kind, rec):
    d = lambda r: json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode()
    if kind == "missing_comma":
        return d(rec).replace(b',"event_type"', b' "event_type"', 1)
    if kind == "trailing_comma":
        return d(rec)[:-1] + b",}"
    if kind == "float_in_int":
        rec["duration_ms"] = 12.5
    elif kind == "string_in_number":
        rec["user_id"] = "12abc"
    elif kind == "int_out_of_range":
        rec["duration_ms"] = 3_000_000_000
    elif kind == "missing_required":
        del rec["event_type"]
    elif kind == "null_required":
        rec["event_type"] = None
    elif kind == "bad_timestamp":
        rec["timestamp"] = "yesterday at noon"
    elif kind == "not_utf8":
        return d(rec).replace(b'"Home"', b'"H\xffme"').replace(b'"Cart"', b'"C\xffrt"').replace(b'"Checkout"', b'"Ch\xffckout"').replace(b'"Search results"', b'"S\xffarch"').replace("Running shoes – Men".encode(), b"R\xff")
    elif kind == "oversized":
        rec["properties"]["blob"] = "x" * (1024 * 1000 + 10)
    elif kind == "not_object":
        return d([rec["event_id"]])
    elif kind == "bad_decimal_places":
        rec["revenue"] = 1.234
    return d(rec)

if __name__ == "__main__":
    main()
