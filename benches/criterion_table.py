#!/usr/bin/env python3
"""Prints a table of kbs vs raw throughput from criterion's saved estimates (target/criterion).

Usage: python3 benches/criterion_table.py [target-dir]
For each group/codec it shows kbs, the raw baseline and the ratio kbs/raw (1.00 = as fast), and
the floor (the least any encoder or verifying reader of the format must do; see
benches/benches/format.rs) with its ratio to raw.
"""
import json, os, sys

root = os.path.join(sys.argv[1] if len(sys.argv) > 1 else "target", "criterion")

def rate(group, impl, codec):
    path = os.path.join(root, group, impl, codec, "new")
    try:
        est = json.load(open(os.path.join(path, "estimates.json")))
        bench = json.load(open(os.path.join(path, "benchmark.json")))
    except FileNotFoundError:
        return None
    nanos = est["mean"]["point_estimate"]
    nbytes = bench["throughput"]["Bytes"]
    return nbytes / nanos  # bytes per ns == GB/s

print("| benchmark | codec | kbs (GB/s) | raw codec (GB/s) | kbs / raw | floor (GB/s) | floor / raw |")
print("|---|---|---|---|---|---|---|")
for group, impls in (("encode", ["kbs"]), ("decode_verify", ["kbs", "kbs-records"])):
    for codec in ("none", "lz4", "zstd"):
        raw = rate(group, "raw", codec)
        floor = rate(group, "floor", codec)
        for impl in impls:
            k = rate(group, impl, codec)
            if k is None or raw is None:
                continue
            label = group if impl == "kbs" else f"{group} (owned records)"
            floors = f"{floor:.2f} | {floor / raw:.2f}" if floor is not None and impl == "kbs" else "– | –"
            print(f"| {label} | {codec} | {k:.2f} | {raw:.2f} | {k / raw:.2f} | {floors} |")
