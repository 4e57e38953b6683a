#!/usr/bin/python3
"""peer.py - the textbook consumer that payq's benchmark measures itself against (phase (j)).

What it is: the design most teams write first, in Python with confluent-kafka and psycopg2
(Debian's python3-confluent-kafka and python3-psycopg2), on payq's own schema and outcome
table (docs/outcomes.md, ledger mode, as worker/outcome.c evaluates it). For each command it
reads the dedup row, locks and reads the order, decides, and writes row by row: the order,
the payment, the dedup row, or the duplicate counter or the key_reuse anomaly. Two modes:

  per-command  one database transaction and one synchronous Kafka offset commit per command
  per-poll     the same, but one transaction and one synchronous commit per poll batch
               (consume() of up to --batch messages, waiting at most --batch-wait-ms)

It is not payq: a malformed message is counted and skipped (no DLQ), there is no
consumer_progress row, no retry and no rebalance handling beyond the client's own; it runs
alone in its group. tests/bench/run measures it on (b)'s backlog and checks that it leaves
the same rows as payq-worker on one mixed input.

usage:
  peer.py run --brokers B --topic T --group G --db CONNINFO --mode per-command|per-poll
              --count N [--batch 500] [--batch-wait-ms 20] [--timeout S]
      consumes until N messages are handled; prints one JSON line: mode, messages,
      seconds, commands_per_s (first message to last commit), cpu_seconds over that window,
      outcomes (counts), malformed
  peer.py selftest [VECTORS_DIR]
      the command decoder against tests/vectors: accepts the valid, rejects the malformed,
      and hashes as payload_sha256 does (docs/wire-format.md)
"""
import base64
import glob
import hashlib
import json
import os
import re
import sys
import time

VALUE_MAX = 64 * 1024
AMOUNT_MAX = 10**15
TEXT_MAX = 256
ID_RE = re.compile(r'[A-Za-z0-9._:-]{1,64}\Z')
CURRENCY_RE = re.compile(r'[A-Z]{3}\Z')
TYPES = ('create_order', 'pay', 'cancel_order')
OPTIONAL = {'create_order': 'customer_id', 'pay': 'payer_id', 'cancel_order': 'reason'}


class Malformed(Exception):
    """A message the wire format refuses; args[0] is the reason code."""


class _Pairs(list):
    """A JSON object as its (name, value) pairs, so that a repeated name is seen."""


class _Fraction:
    """A JSON number with a fraction or an exponent: never an amount nor a version."""

    def __init__(self, text):
        self.text = text


def _no_constant(name):
    raise ValueError(f'not JSON: {name}')


def _valid_text(v):
    """True when every string in v (keys too) encodes as UTF-8 (no lone surrogate)."""
    if isinstance(v, str):
        try:
            v.encode('utf-8')
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(v, _Pairs):
        return all(_valid_text(k) and _valid_text(x) for k, x in v)
    if isinstance(v, list):
        return all(_valid_text(x) for x in v)
    return True


def _is_int(v):
    return type(v) is int  # bool is a subclass of int; true is no number here


def _id(obj, name):
    if name not in obj:
        raise Malformed('missing_field', name)
    v = obj[name]
    if not isinstance(v, str) or not ID_RE.match(v):
        raise Malformed('bad_field', name)
    return v


def decode(value, key):
    """The command in a message value (bytes or None) with its key (bytes, or None for no
    key check): a dict with type, command_id, order_id, amount_minor, currency, the
    optional string, and sha256 (bytes). Raises Malformed."""
    if not value:
        raise Malformed('empty')
    if len(value) > VALUE_MAX:
        raise Malformed('too_large')
    try:
        text = value.decode('utf-8')
    except UnicodeDecodeError:
        raise Malformed('bad_encoding') from None
    if text.strip(' \t\r\n') == 'null':
        raise Malformed('empty')
    try:
        root = json.loads(text, object_pairs_hook=_Pairs, parse_float=_Fraction,
                          parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise Malformed('not_json') from None
    if not _valid_text(root):
        raise Malformed('bad_encoding')
    if not isinstance(root, _Pairs):
        raise Malformed('not_json')
    obj = dict(root)
    if len(obj) != len(root):
        raise Malformed('duplicate_field')
    if 'v' not in obj:
        raise Malformed('missing_field', 'v')
    if not _is_int(obj['v']) or obj['v'] != 1:
        raise Malformed('unsupported_version')
    if 'type' not in obj:
        raise Malformed('missing_field', 'type')
    ctype = obj['type']
    if ctype not in TYPES:
        raise Malformed('unknown_type')
    cmd = {'type': ctype, 'command_id': _id(obj, 'command_id'),
           'order_id': _id(obj, 'order_id'), 'amount_minor': None, 'currency': None}
    if ctype in ('create_order', 'pay'):
        if 'amount_minor' not in obj:
            raise Malformed('missing_field', 'amount_minor')
        amount = obj['amount_minor']
        if not _is_int(amount) or not 1 <= amount <= AMOUNT_MAX:
            raise Malformed('bad_amount')
        if 'currency' not in obj:
            raise Malformed('missing_field', 'currency')
        if not isinstance(obj['currency'], str) or not CURRENCY_RE.match(obj['currency']):
            raise Malformed('bad_field', 'currency')
        cmd['amount_minor'], cmd['currency'] = amount, obj['currency']
    opt = OPTIONAL[ctype]
    cmd[opt] = None
    if opt in obj:
        v = obj[opt]
        if not isinstance(v, str) or '\0' in v or len(v.encode('utf-8')) > TEXT_MAX:
            raise Malformed('bad_field', opt)
        cmd[opt] = v
    if key is not None and key != cmd['order_id'].encode('utf-8'):
        raise Malformed('key_mismatch')
    cmd['sha256'] = payload_sha256(cmd)
    return cmd


def payload_sha256(cmd):
    """SHA-256 of the canonical form (docs/wire-format.md, "The payload hash")."""
    fields = [('v', '1'), ('type', cmd['type']), ('command_id', cmd['command_id']),
              ('order_id', cmd['order_id'])]
    if cmd['type'] in ('create_order', 'pay'):
        fields += [('amount_minor', str(cmd['amount_minor'])), ('currency', cmd['currency'])]
    opt = OPTIONAL[cmd['type']]
    if cmd.get(opt) is not None:
        fields.append((opt, cmd[opt]))
    form = b''.join(name.encode() + b'=' + str(len(v.encode('utf-8'))).encode() + b':' +
                    v.encode('utf-8') + b'\n' for name, v in fields)
    return hashlib.sha256(form).digest()


# ---- the outcome table (docs/outcomes.md, ledger mode), one command at a time ----

SQL_DEDUP = ('SELECT payload_sha256 FROM payq.processed_commands'
             ' WHERE order_id = %s AND command_id = %s')
SQL_DUPLICATE = ('UPDATE payq.processed_commands SET duplicates = duplicates + 1,'
                 ' last_seen_at = now() WHERE order_id = %s AND command_id = %s')
SQL_KEY_REUSE = ('INSERT INTO payq.anomalies (kind, order_id, command_id, detail, kafka_topic,'
                 ' kafka_partition, kafka_offset) VALUES (%s, %s, %s, %s, %s, %s, %s)')
SQL_LOCK = ('SELECT status, version, amount_minor, currency FROM payq.orders'
            ' WHERE order_id = %s FOR UPDATE')
SQL_CREATE = ('INSERT INTO payq.orders (order_id, amount_minor, currency, customer_id, status,'
              ' version) VALUES (%s, %s, %s, %s, %s, 1)')
SQL_PAID = ("UPDATE payq.orders SET status = 'paid', version = version + 1,"
            ' paid_command_id = %s, updated_at = now() WHERE order_id = %s AND version = %s')
SQL_CANCELLED = ("UPDATE payq.orders SET status = 'cancelled', version = version + 1,"
                 ' updated_at = now() WHERE order_id = %s AND version = %s')
SQL_PAYMENT = ('INSERT INTO payq.payments (order_id, command_id, amount_minor, currency,'
               " payer_id, status) VALUES (%s, %s, %s, %s, %s, 'succeeded')")
SQL_PROCESSED = ('INSERT INTO payq.processed_commands (order_id, command_id, command_type,'
                 ' payload_sha256, outcome, detail, kafka_topic, kafka_partition, kafka_offset,'
                 ' duplicates) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 0)')


def _unpaid(order):
    """The rows pay and cancel_order share: (outcome, detail) or None when unpaid."""
    if order is None:
        return 'rejected_unknown_order', 'no such order'
    if order[0] == 'paid':
        return 'rejected_already_paid', 'order is paid'
    if order[0] == 'cancelled':
        return 'rejected_order_cancelled', 'order is cancelled'
    return None


def _versioned(cur, sql, args):
    cur.execute(sql, args)
    if cur.rowcount != 1:
        raise RuntimeError(f'order version check failed: {args}')


def apply_command(cur, cmd, topic, partition, offset):
    """Applies one decoded command inside the caller's transaction; returns its outcome
    (duplicate and key_reuse included)."""
    oid, cid = cmd['order_id'], cmd['command_id']
    cur.execute(SQL_DEDUP, (oid, cid))
    row = cur.fetchone()
    if row is not None:
        if bytes(row[0]) == cmd['sha256']:
            cur.execute(SQL_DUPLICATE, (oid, cid))
            return 'duplicate'
        cur.execute(SQL_KEY_REUSE, ('key_reuse', oid, cid,
                                    'same (order_id, command_id) with another payload_sha256',
                                    topic, partition, offset))
        return 'key_reuse'
    cur.execute(SQL_LOCK, (oid,))
    order = cur.fetchone()
    detail = None
    if cmd['type'] == 'create_order':
        if order is not None:
            outcome, detail = 'rejected_order_exists', f'order is {order[0]}'
        else:
            cur.execute(SQL_CREATE, (oid, cmd['amount_minor'], cmd['currency'],
                                     cmd['customer_id'], 'unpaid'))
            outcome = 'applied'
    elif cmd['type'] == 'pay':
        rejected = _unpaid(order)
        if rejected:
            outcome, detail = rejected
        elif order[2] != cmd['amount_minor'] or order[3] != cmd['currency']:
            outcome = 'rejected_amount_mismatch'
            detail = (f'order is {order[2]} {order[3]}, pay is {cmd["amount_minor"]} '
                      f'{cmd["currency"]}')
        else:
            _versioned(cur, SQL_PAID, (cid, oid, order[1]))
            cur.execute(SQL_PAYMENT, (oid, cid, cmd['amount_minor'], cmd['currency'],
                                      cmd['payer_id']))
            outcome = 'applied'
    else:
        rejected = _unpaid(order)
        if rejected:
            outcome, detail = rejected
        else:
            _versioned(cur, SQL_CANCELLED, (oid, order[1]))
            outcome = 'applied'
    cur.execute(SQL_PROCESSED, (oid, cid, cmd['type'], cmd['sha256'], outcome, detail, topic,
                                partition, offset))
    return outcome


# ---- the consumer ----

def _arg(args, name, default=None, conv=str):
    if name in args:
        i = args.index(name)
        if i + 1 >= len(args):
            sys.exit(f'peer: {name} needs a value')
        return conv(args[i + 1])
    if default is None:
        sys.exit(f'peer: {name} is required')
    return default


def _cpu():
    t = os.times()
    return t.user + t.system


def cmd_run(args):
    import psycopg2
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    brokers, topic, group = _arg(args, '--brokers'), _arg(args, '--topic'), _arg(args, '--group')
    mode, count = _arg(args, '--mode'), _arg(args, '--count', conv=int)
    batch = _arg(args, '--batch', 500, int)
    wait_s = _arg(args, '--batch-wait-ms', 20, int) / 1000.0
    deadline = time.monotonic() + _arg(args, '--timeout', 600, float)
    if mode not in ('per-command', 'per-poll') or count < 1 or not 1 <= batch <= 100000:
        sys.exit('peer: --mode per-command|per-poll, --count >= 1, --batch 1..100000')
    if mode == 'per-command':
        batch = 1

    db = psycopg2.connect(_arg(args, '--db'), application_name='payq-bench-peer')
    consumer = Consumer({
        'bootstrap.servers': brokers, 'group.id': group,
        'enable.auto.commit': False, 'enable.auto.offset.store': False,
        'auto.offset.reset': 'earliest', 'isolation.level': 'read_committed',
        'enable.partition.eof': False,
    })
    consumer.subscribe([topic])
    handled = malformed = 0
    outcomes = {}
    t0 = cpu0 = t_end = cpu_end = None
    try:
        while handled < count:
            if time.monotonic() > deadline:
                sys.exit(f'peer: only {handled} of {count} messages handled before the timeout')
            msgs = []
            for m in consumer.consume(num_messages=batch, timeout=wait_s if handled else 1.0):
                if not m.error():
                    msgs.append(m)
                elif m.error().fatal():
                    raise KafkaException(m.error())
                # Any other error is librdkafka's to retry: the message is not one.
            if not msgs:
                continue
            if t0 is None:
                t0, cpu0 = time.monotonic(), _cpu()
            next_offsets = {}
            with db.cursor() as cur:
                for m in msgs:
                    try:
                        cmd = decode(m.value(), m.key())
                    except Malformed:
                        malformed += 1
                    else:
                        out = apply_command(cur, cmd, m.topic(), m.partition(), m.offset())
                        outcomes[out] = outcomes.get(out, 0) + 1
                    next_offsets[m.partition()] = m.offset() + 1
            db.commit()
            consumer.commit(offsets=[TopicPartition(topic, p, o)
                                     for p, o in sorted(next_offsets.items())],
                            asynchronous=False)
            handled += len(msgs)
            t_end, cpu_end = time.monotonic(), _cpu()
    finally:
        consumer.close()
        db.close()
    seconds = t_end - t0
    print(json.dumps({
        'mode': mode, 'batch': batch, 'messages': handled, 'malformed': malformed,
        'seconds': round(seconds, 3),
        'commands_per_s': round(handled / seconds, 1) if seconds > 0 else None,
        'cpu_seconds': round(cpu_end - cpu0, 3), 'outcomes': outcomes,
    }))


# ---- selftest: the decoder against tests/vectors ----

def _vector_value(rec):
    data = (base64.b64decode(rec['value_b64'], validate=True) if 'value_b64' in rec
            else rec['value'].encode('utf-8'))
    return data + b' ' * (rec.get('pad_to', len(data)) - len(data))


def cmd_selftest(args):
    vdir = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                             '..', 'vectors')
    bad = []
    n = 0
    for path in sorted(glob.glob(os.path.join(vdir, '*.jsonl'))):
        for line in open(path, encoding='utf-8'):
            if not line.strip():
                continue
            rec = json.loads(line)
            key = rec.get('key')
            n += 1
            try:
                cmd = decode(_vector_value(rec), None if key is None else key.encode('utf-8'))
                got = 'ok'
            except Malformed as e:
                cmd, got = None, e.args[0]
            want = rec['expect']
            if (want == 'ok') != (got == 'ok'):
                bad.append(f"{rec['name']}: expected {want}, decoded as {got}")
            elif cmd and cmd['sha256'].hex() != rec['sha256']:
                bad.append(f"{rec['name']}: sha256 {cmd['sha256'].hex()}, expected {rec['sha256']}")
    if n == 0:
        sys.exit(f'peer selftest: no vectors in {vdir}')
    if bad:
        sys.exit('peer selftest: ' + '; '.join(bad))
    print(f'peer selftest: {n} vectors: the valid decoded with their sha256, the malformed refused')


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ('run', 'selftest'):
        sys.exit(__doc__)
    if sys.argv[1] == 'run':
        cmd_run(sys.argv[2:])
    else:
        cmd_selftest(sys.argv[2:])


if __name__ == '__main__':
    main()
