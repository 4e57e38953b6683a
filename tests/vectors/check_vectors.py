#!/usr/bin/env python3
"""check_vectors.py - the test vectors against schema/command.schema.json.

Every vector in tests/vectors/*.jsonl is one line: name, key (a string, or null for no
key check), the value as "value" (text) or "value_b64" (bytes that are not UTF-8 or hold a
NUL), an optional "pad_to" (spaces appended up to that many bytes), "expect" ("ok" or a
reason code) and, for "ok", the "sha256" of the canonical form (docs/wire-format.md).
A vector whose rule JSON Schema cannot state has "codec_only" with the reason why.

This check asserts, independently of the C codec (tests/unit/test_codec.c reads the same
files):
  - every reason code that common/codec.h names has at least one vector;
  - the schema accepts every "ok" vector and rejects every malformed one not codec_only;
  - each "sha256" is the hash of the canonical form, computed here from the parsed value.
Usage: check_vectors.py [VECTORS_DIR [SOURCE_ROOT]]
"""
import base64
import glob
import hashlib
import json
import os
import re
import sys

import jsonschema

OPTIONAL = {"create_order": "customer_id", "pay": "payer_id", "cancel_order": "reason"}


def value_bytes(rec):
    """The message value a vector describes, as bytes."""
    if "value_b64" in rec:
        data = base64.b64decode(rec["value_b64"], validate=True)
    else:
        data = rec["value"].encode("utf-8")
    pad = rec.get("pad_to", len(data))
    return data + b" " * (pad - len(data))


def canonical_sha256(obj):
    """The payload hash of a valid command, built as docs/wire-format.md describes."""
    fields = [("v", "1"), ("type", obj["type"]), ("command_id", obj["command_id"]),
              ("order_id", obj["order_id"])]
    if obj["type"] in ("create_order", "pay"):
        fields += [("amount_minor", str(obj["amount_minor"])), ("currency", obj["currency"])]
    opt = OPTIONAL[obj["type"]]
    if opt in obj:
        fields.append((opt, obj[opt]))
    form = b""
    for name, val in fields:
        raw = val.encode("utf-8")
        form += b"%s=%d:%s\n" % (name.encode(), len(raw), raw)
    return hashlib.sha256(form).hexdigest()


def reject_constant(name):
    raise ValueError("not JSON: " + name)


def schema_accepts(validator, data):
    """True when data is strict UTF-8 JSON that the schema accepts."""
    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False, None
    return validator.is_valid(obj), obj


def reason_codes(source_root):
    """The codec's reason codes, read from the enum in common/codec.h."""
    with open(os.path.join(source_root, "common", "codec.h"), encoding="utf-8") as f:
        names = re.findall(r"\bPAYQ_REASON_([A-Z_]+)\b", f.read())
    return {n.lower() for n in names if n not in ("OK", "_CNT")}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    vdir = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PAYQ_VECTORS_DIR", here)
    root = sys.argv[2] if len(sys.argv) > 2 else os.environ.get(
        "PAYQ_SOURCE_ROOT", os.path.join(here, "..", ".."))
    with open(os.path.join(root, "schema", "command.schema.json"), encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    codes = reason_codes(root)

    errors, seen, names, counts = [], set(), set(), {"ok": 0, "rejected": 0, "codec_only": 0}
    files = sorted(glob.glob(os.path.join(vdir, "*.jsonl")))
    if not files:
        errors.append("no *.jsonl in " + vdir)
    for path in files:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                rec = json.loads(line)
                where = "%s:%d %s" % (os.path.basename(path), lineno, rec.get("name"))
                if rec["name"] in names:
                    errors.append(where + ": duplicate name")
                names.add(rec["name"])
                want = rec["expect"]
                if want != "ok" and want not in codes:
                    errors.append(where + ": unknown reason " + want)
                seen.add(want)
                if rec.get("codec_only"):
                    if want == "ok":
                        errors.append(where + ": a valid vector cannot be codec_only")
                    counts["codec_only"] += 1
                    continue
                ok, obj = schema_accepts(validator, value_bytes(rec))
                if want == "ok":
                    counts["ok"] += 1
                    if not ok:
                        errors.append(where + ": the schema rejects a valid command")
                    elif canonical_sha256(obj) != rec.get("sha256"):
                        errors.append("%s: sha256 %s, canonical form gives %s" %
                                      (where, rec.get("sha256"), canonical_sha256(obj)))
                else:
                    counts["rejected"] += 1
                    if ok:
                        errors.append(where + ": the schema accepts a " + want + " vector")
    for code in sorted(codes - seen):
        errors.append("no vector for reason code " + code)
    for e in errors:
        print("FAIL " + e)
    print("vectors: %d valid, %d rejected by the schema, %d codec-only; %d reason codes covered"
          % (counts["ok"], counts["rejected"], counts["codec_only"], len(codes & seen)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
