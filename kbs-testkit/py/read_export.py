#!/usr/bin/env python3
"""Reads a `kbs export` with independent readers and writes one JSON line per record, in the
consumer's row form (consume.py):

    [topic, partition, offset, timestamp, key, value, [[header_key, header_value], ...]]

bytes as base64, null as null. Parquet is read by DuckDB (`read_parquet`, with
`hive_partitioning` when the export has name=value folders, whose columns are checked against
each record), Avro by fastavro, CSV by Python's csv module, JSON Lines by Python's json.

    read_export.py FORMAT DIR OUT [--hive]
"""
import base64
import csv
import glob
import gzip
import json
import os
import sys


def b64(b):
    return None if b is None else base64.b64encode(b).decode()


def text_field(value, bytes_mode):
    """A key or value of the text formats, back to bytes (docs/EXPORT.md)."""
    if value is None:
        return None
    if isinstance(value, str):
        return base64.b64decode(value) if bytes_mode else value.encode()
    if isinstance(value, dict) and set(value) == {"base64"}:
        return base64.b64decode(value["base64"])
    raise SystemExit(f"unexpected field {value!r} (json form needs the raw text)")


def typed_field(text, raw):
    if text is not None:
        return text.encode() if isinstance(text, str) else bytes(text)
    return None if raw is None else bytes(raw)


def row(meta, key, value, headers):
    return [meta["topic"], meta["partition"], meta["offset"], meta["timestamp"], b64(key), b64(value),
            [[b64(k), b64(v)] for k, v in headers]]


def millis(ts):
    import datetime
    if isinstance(ts, int):
        return ts
    return int(round(ts.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)) if ts.tzinfo is None \
        else int(round(ts.timestamp() * 1000))


def read_parquet(root, hive):
    import duckdb
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    files = os.path.join(root, "**", "*.parquet")
    rel = con.execute(f"SELECT * FROM read_parquet('{files}', hive_partitioning = {str(hive).lower()}, "
                      "union_by_name = true)")
    names = [d[0] for d in rel.description]
    rows = []
    for values in rel.fetchall():
        r = dict(zip(names, values))
        m = r["metadata"]
        meta = {"topic": m["topic"], "partition": m["partition"], "offset": m["offset"],
                "timestamp": millis(m["timestamp"])}
        if hive:
            # The folder columns equal the record's own fields.
            if "partition" in r:
                assert int(r["partition"]) == meta["partition"], (r["partition"], meta)
            if "date" in r:
                import datetime
                day = datetime.datetime.fromtimestamp(meta["timestamp"] / 1000, datetime.timezone.utc).date()
                assert str(r["date"]) == day.isoformat(), (r["date"], meta)
        key = typed_field(r.get("key"), r.get("key_bytes"))
        value = typed_field(r.get("value"), r.get("value_bytes"))
        headers = [(bytes(h["key"]), None if h["value"] is None else bytes(h["value"])) for h in r["headers"]]
        rows.append(row(meta, key, value, headers))
    return rows


def read_avro(root):
    import fastavro
    rows = []
    for path in sorted(glob.glob(os.path.join(root, "**", "*.avro"), recursive=True)):
        with open(path, "rb") as f:
            for r in fastavro.reader(f):
                m = r["metadata"]
                meta = dict(m, timestamp=millis(m["timestamp"]))
                key = typed_field(r.get("key"), r.get("key_bytes"))
                value = typed_field(r.get("value"), r.get("value_bytes"))
                rows.append(row(meta, key, value, [(h["key"], h["value"]) for h in r["headers"]]))
    return rows


def read_text(root, fmt, key_bytes, value_bytes):
    rows = []
    for path in sorted(glob.glob(os.path.join(root, "**", "*." + fmt + "*"), recursive=True)):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", newline="", encoding="utf-8") as f:
            if fmt == "csv":
                records = []
                for c in csv.DictReader(f):
                    records.append({
                        "key": json.loads(c["key"]), "value": json.loads(c["value"]),
                        "headers": json.loads(c["headers"]),
                        "metadata": {"topic": c["topic"], "partition": int(c["partition"]),
                                     "offset": int(c["offset"]), "timestamp": int(c["timestamp"])}})
            else:
                records = [json.loads(line) for line in f if line.strip()]
        for e in records:
            headers = [(text_field(h["key"], False), text_field(h["value"], False)) for h in e["headers"]]
            rows.append(row(e["metadata"], text_field(e["key"], key_bytes), text_field(e["value"], value_bytes),
                            headers))
    return rows


def main():
    fmt, root, out = sys.argv[1], sys.argv[2], sys.argv[3]
    hive = "--hive" in sys.argv[4:]
    options = json.load(open(os.path.join(root, "_kbs_export.json")))
    if fmt == "parquet":
        rows = read_parquet(root, hive)
    elif fmt == "avro":
        rows = read_avro(root)
    else:
        rows = read_text(root, fmt, options["key_as"] == "bytes", options["value_as"] == "bytes")
    with open(out, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
