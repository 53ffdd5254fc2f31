#!/usr/bin/env python3
"""Converts tests/data/labelled.src (and holdout.src) marked-up text into .jsonl files.

Each non-comment line of the source is one example. Gold spans are written
inline as «alias:text»; the markers are removed and the span's UTF-8 *byte*
offsets (end exclusive) are recorded, so offsets are exact by construction.
All examples are synthetic (invented people, numbers and places).

Run from the crate root:  python3 tests/data/make_labelled.py
"""
import json
import os
import re

ALIASES = {
    "name": "name", "geo": "geographic", "date": "date", "phone": "phone", "fax": "fax",
    "email": "email", "ssn": "ssn", "mrn": "medical_record_number",
    "hp": "health_plan_number", "acct": "account_number", "lic": "license_number",
    "vin": "vehicle_identifier", "dev": "device_identifier", "url": "url",
    "ip": "ip_address", "bio": "biometric", "photo": "photo", "id": "other_unique_id",
    "age": "age_over_89",
}
MARK = re.compile(r"«([a-z]+):(.*?)»")

here = os.path.dirname(os.path.abspath(__file__))

def convert(src_name, dst_name):
    src = os.path.join(here, src_name)
    dst = os.path.join(here, dst_name)

    out = []
    for lineno, line in enumerate(open(src, encoding="utf-8"), 1):
        line = line.rstrip("\n")
        if not line.strip() or line.startswith("#"):
            continue
        text = ""
        spans = []
        pos = 0
        for m in MARK.finditer(line):
            text += line[pos:m.start()]
            alias, inner = m.group(1), m.group(2)
            if alias not in ALIASES:
                raise SystemExit(f"line {lineno}: unknown alias {alias}")
            start = len(text.encode("utf-8"))
            text += inner
            spans.append({"kind": ALIASES[alias], "start": start, "end": len(text.encode("utf-8"))})
            pos = m.end()
        text += line[pos:]
        if "«" in text or "»" in text:
            raise SystemExit(f"line {lineno}: unbalanced marker")
        out.append(json.dumps({"text": text, "spans": spans}, ensure_ascii=False))

    with open(dst, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")

    # self-check of offsets
    for l in out:
        d = json.loads(l)
        b = d["text"].encode("utf-8")
        for s in d["spans"]:
            assert 0 <= s["start"] < s["end"] <= len(b)
            b[s["start"]:s["end"]].decode("utf-8")
    counts = {}
    neg = 0
    for l in out:
        d = json.loads(l)
        if not d["spans"]:
            neg += 1
        for s in d["spans"]:
            counts[s["kind"]] = counts.get(s["kind"], 0) + 1
    print(f"{dst_name}: {len(out)} lines, {neg} negative")
    for k in ALIASES.values():
        print(f"  {k:24} {counts.get(k, 0)}")


convert("labelled.src", "labelled.jsonl")
# Held-out set: written after development, evaluated without tuning.
convert("holdout.src", "holdout.jsonl")
