#!/usr/bin/env python3
"""payq conformance producer in Python (confluent-kafka).

Reads commands as JSON lines, builds each v1 command, validates it against
schema/command.schema.json, and produces it keyed by order ID with acks=all and
idempotence, a fresh W3C traceparent header on each. The one setting that matters:
partitioner=murmur2_random, so keyed records land where the Java client puts them.
"""
import argparse
import json
import os
import secrets
import sys

import jsonschema
from confluent_kafka import Producer

COMMAND_FIELDS = ("v", "type", "command_id", "order_id", "amount_minor", "currency",
                  "customer_id", "payer_id", "reason")


def build_command(fields):
    """A v1 command from the given fields: only the fields the wire format names."""
    cmd = {k: fields[k] for k in COMMAND_FIELDS if k in fields}
    cmd["v"] = 1
    return cmd


def traceparent():
    """A fresh W3C trace context: version 00, random trace and span IDs, sampled."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", default="payq.commands")
    ap.add_argument("--schema", required=True, help="path to command.schema.json")
    ap.add_argument("--librdkafka-default-partitioner", action="store_true",
                    help="leave librdkafka's consistent_random: the misconfiguration to show")
    ap.add_argument("input", help="JSON lines, one command each ('-' for stdin)")
    args = ap.parse_args()

    with open(args.schema, encoding="utf-8") as f:
        validator = jsonschema.Draft202012Validator(json.load(f))
    conf = {
        "bootstrap.servers": args.brokers,
        "enable.idempotence": True,
        "acks": "all",
        "client.id": "payq-conformance-python",
        "linger.ms": 5,
    }
    if not args.librdkafka_default_partitioner:
        conf["partitioner"] = "murmur2_random"  # Java's murmur2 for keyed records
    producer = Producer(conf)
    failed = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(f"{msg.key().decode()}: {err}")

    src = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")
    sent = 0
    with src:
        for n, line in enumerate(src, 1):
            if not line.strip():
                continue
            cmd = build_command(json.loads(line))
            errors = sorted(validator.iter_errors(cmd), key=lambda e: e.path)
            if errors:
                sys.exit(f"line {n}: invalid command: {errors[0].message}")
            headers = [("content-type", b"application/json"),
                       ("payq-type", cmd["type"].encode()),
                       ("payq-command-id", cmd["command_id"].encode()),
                       ("traceparent", traceparent().encode())]
            while True:
                try:
                    producer.produce(args.topic, key=cmd["order_id"].encode(),
                                     value=json.dumps(cmd, separators=(",", ":")).encode(),
                                     headers=headers, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            sent += 1
    left = producer.flush(60)
    if left or failed:
        sys.exit(f"not delivered: {left} outstanding, {len(failed)} failed: {failed[:3]}")
    print(f"python: {sent} commands delivered to {args.topic}", file=sys.stderr)


if __name__ == "__main__":
    main()
