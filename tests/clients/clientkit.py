#!/usr/bin/env python3
"""Helpers for the clients suite: the conformance commands, and the placement table.

  clientkit.py commands N_ORDERS SEED > commands.jsonl
      Per order a create_order, then a pay (or, for every 4th order, a cancel_order).
      Order IDs are 1 to 64 characters over the whole charset [A-Za-z0-9._:-]: the first
      65 are each one character of it, the next 64 have every length from 1 to 64, the rest
      random lengths. Same arguments, same bytes.
  clientkit.py schema-cases > cases.jsonl
      Commands at the edges of the wire format, valid and invalid, one per line, for
      comparing schema/command.schema.json with the worker's codec.
  clientkit.py schema-verdict SCHEMA CASES
      Prints the numbers of the lines the schema rejects, one per line.
  clientkit.py placement DRYRUN CLIENT_NAME:KCAT_FILE...
      DRYRUN is `payq-producer --dry-run` output ("partition order_id command_id type").
      Each KCAT_FILE holds "partition<TAB>key<TAB>headers" lines of that client's messages.
      Prints the table client | orders | misplaced and, as JSON on the last line, the
      misplaced count per client. A message without a well-formed traceparent is an error.
"""
import json
import random
import re
import sys

CHARSET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"
TRACEPARENT = re.compile(r"traceparent=00-([0-9a-f]{32})-([0-9a-f]{16})-0[01](,|$)")
CURRENCIES = ("EUR", "USD", "CNY", "JPY")


def order_ids(n, rnd):
    ids, seen = [], set()

    def add(i):
        if i not in seen:
            seen.add(i)
            ids.append(i)

    for c in CHARSET:
        add(c)
    for length in range(1, 65):
        add("".join(rnd.choice(CHARSET) for _ in range(length)))
    while len(ids) < n:
        add("".join(rnd.choice(CHARSET) for _ in range(rnd.randint(1, 64))))
    return ids[:n]


def commands(n_orders, seed):
    rnd = random.Random(seed)
    for k, order in enumerate(order_ids(n_orders, rnd)):
        amount = rnd.randint(1, 10**15)
        currency = rnd.choice(CURRENCIES)
        yield {"v": 1, "type": "create_order", "command_id": f"c-{k}-1", "order_id": order,
               "amount_minor": amount, "currency": currency, "customer_id": f"客户-{k}"}
        if k % 4 == 3:
            yield {"v": 1, "type": "cancel_order", "command_id": f"c-{k}-2", "order_id": order,
                   "reason": "customer"}
        else:
            yield {"v": 1, "type": "pay", "command_id": f"c-{k}-2", "order_id": order,
                   "amount_minor": amount, "currency": currency, "payer_id": f"u-{k}"}


def schema_cases():
    """Edge cases on which the schema and the codec must agree. Left out on purpose, as the
    schema's description says: 1.0 or 1e3 amounts, multibyte strings near 256 bytes,
    duplicate keys and a key that differs from order_id."""
    pay = {"v": 1, "type": "pay", "command_id": "c-1", "order_id": "o-1", "amount_minor": 5,
           "currency": "EUR"}

    def with_(base, **kw):
        d = dict(base)
        for k, v in kw.items():
            if v is KeyError:
                d.pop(k, None)
            else:
                d[k] = v
        return d
    yield pay
    yield with_(pay, payer_id="u-1", extra={"anything": [1, 2]})
    yield with_(pay, order_id="A" * 64, command_id=CHARSET[:64])
    yield with_(pay, amount_minor=10**15)
    yield with_(pay, payer_id="x" * 256)
    yield {"v": 1, "type": "create_order", "command_id": "c", "order_id": "o", "amount_minor": 1,
           "currency": "JPY", "customer_id": "k"}
    yield {"v": 1, "type": "cancel_order", "command_id": "c", "order_id": "o"}
    yield {"v": 1, "type": "cancel_order", "command_id": "c", "order_id": "o", "reason": "r",
           "amount_minor": "ignored on a cancel"}
    yield with_(pay, v=2)
    yield with_(pay, v="1")
    yield with_(pay, type="refund")
    yield with_(pay, command_id="")
    yield with_(pay, command_id="c" * 65)
    yield with_(pay, order_id="o/1")
    yield with_(pay, order_id="o 1")
    yield with_(pay, command_id=7)
    yield with_(pay, amount_minor=0)
    yield with_(pay, amount_minor=-5)
    yield with_(pay, amount_minor=10**15 + 1)
    yield with_(pay, amount_minor="5")
    yield with_(pay, amount_minor=KeyError)
    yield with_(pay, currency="eur")
    yield with_(pay, currency="EURO")
    yield with_(pay, currency=KeyError)
    yield with_(pay, payer_id="x" * 257)
    yield with_(pay, payer_id=None)
    yield with_(pay, payer_id=42)
    yield {"v": 1, "type": "cancel_order", "command_id": "c", "order_id": "o", "reason": None}
    yield {"v": 1, "type": "create_order", "command_id": "c", "order_id": "o", "amount_minor": 1,
           "currency": "EUR", "customer_id": ["k"]}
    yield {"type": "pay", "command_id": "c", "order_id": "o", "amount_minor": 1, "currency": "EUR"}


def schema_verdict(schema_path, cases_path):
    import jsonschema
    with open(schema_path, encoding="utf-8") as f:
        v = jsonschema.Draft202012Validator(json.load(f))
    with open(cases_path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not v.is_valid(json.loads(line)):
                print(n)


def placement(dryrun_path, clients):
    expected = {}
    with open(dryrun_path, encoding="utf-8") as f:
        for line in f:
            part, order = line.split()[:2]
            expected[order] = int(part)
    result, traces = {}, set()
    print(f"{'client':<52} | {'orders':>6} | {'misplaced':>9}")
    print(f"{'-' * 52}-+-{'-' * 6}-+-{'-' * 9}")
    for spec in clients:
        name, path = spec.split(":", 1)
        seen, misplaced = set(), set()
        with open(path, encoding="utf-8") as f:
            for line in f:
                part, key, headers = line.rstrip("\n").split("\t", 2)
                if key not in expected:
                    sys.exit(f"{name}: key {key!r} is not one of the commands")
                m = TRACEPARENT.search(headers)
                if not m or m.group(1) in traces:
                    sys.exit(f"{name}: key {key!r}: no fresh traceparent header in {headers!r}")
                traces.add(m.group(1))
                seen.add(key)
                if int(part) != expected[key]:
                    misplaced.add(key)
        if seen != set(expected):
            sys.exit(f"{name}: {len(set(expected) - seen)} orders missing on the topic")
        result[name] = len(misplaced)
        print(f"{name:<52} | {len(seen):>6} | {len(misplaced):>9}")
    print(json.dumps(result))


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "commands":
        for c in commands(int(sys.argv[2]), int(sys.argv[3])):
            print(json.dumps(c, ensure_ascii=False, separators=(",", ":")))
    elif len(sys.argv) == 2 and sys.argv[1] == "schema-cases":
        for c in schema_cases():
            print(json.dumps(c, separators=(",", ":")))
    elif len(sys.argv) == 4 and sys.argv[1] == "schema-verdict":
        schema_verdict(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 4 and sys.argv[1] == "placement":
        placement(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
