#!/usr/bin/env python3
"""table.py - README's Performance table (markdown) from one run of tests/bench/run.

usage: tests/bench/table.py RESULTS.json

Prints the "| figure | value |" table, then one line of the targets met and not met, so that
README's table is generated from the JSON of a run, not typed. A phase the run left out
(--only) has no row.
"""
import json
import sys


def k(v):
    """14321 -> 14.3k, 1173 -> 1,173, 469 -> 469."""
    if v is None:
        return 'n/a'
    if v >= 10000:
        return f'{v / 1000:.1f}k'
    return f'{v:,.0f}'


def count(v):
    return f'{v // 1000}k' if v >= 1000 and v % 1000 == 0 else f'{v:,}'


def ms(v):
    if v is None:
        return 'n/a'
    return f'{v:.0f}' if v >= 10 else f'{v:.1f}'


def slash(values, fn=k):
    return ' / '.join(fn(v) for v in values)


def rows(r):
    out = []
    a = r.get('a_db_ceiling')
    if a:
        conns = list(a['commands_per_s_by_connections'])
        out.append((f"(a) database ceiling: the worker's SQL in pgbench, batch {a['batch_size']}, "
                    f"{' / '.join(conns)} connections",
                    f"{slash(a['commands_per_s_by_connections'].values())} commands/s"))
    b = r.get('b_worker_batch')
    if b:
        out.append((f"(b) one worker, batch mode, {count(b['commands'])} commands, "
                    f"PAYQ_APPLY_LANES={b['lanes']}",
                    f"{k(b['commands_per_s'])} commands/s, {b['cpu_seconds_per_100k']:.2f} CPU s "
                    f"per 100k, {b['peak_rss_mib']:.0f} MiB peak RSS"))
    c = r.get('c_worker_per_message')
    if c:
        out.append(('(c) one worker, batch 1 and a sync offset commit per message',
                    f"{k(c['commands_per_s'])} commands/s"))
    d = r.get('d_replay')
    if d:
        out.append((f"(d) replay of the same {count(d['commands'])} (all duplicates)",
                    f"{k(d['commands_per_s'])} commands/s"))
    e = r.get('e_scale')
    if e:
        out.append((f"(e) {' / '.join(e['commands_per_s'])} workers on {e['partitions']} "
                    'partitions', f"{slash(e['commands_per_s'].values())} commands/s"))
    f = r.get('f_latency')
    if f and f['steps']:
        st = f['steps']
        out.append((f"(f) live latency, Kafka message timestamp to COMMIT, producer at "
                    f"{' / '.join(str(s['percent_of_b']) + '%' for s in st)} of (b) "
                    f"({slash([s['achieved_rate'] for s in st])} commands/s)",
                    f"p50 {slash([s['latency_p50_ms'] for s in st], ms)} ms, "
                    f"p99 {slash([s['latency_p99_ms'] for s in st], ms)} ms, "
                    f"p999 {slash([s['latency_p999_ms'] for s in st], ms)} ms"
                    + (f"; p99 until the worker took it (payq_poll_latency_seconds) "
                       f"{slash([s['poll_latency_p99_ms'] for s in st], ms)} ms"
                       if all(s.get('poll_latency_p99_ms') is not None for s in st) else '')))
    g = r.get('g_gateway')
    if g:
        gc, gs = g['concurrent'], g['sequential']
        out.append((f"(g) gateway mode, sandbox channel at {g['latency_ms']} ms per charge, "
                    f"{gc['gateway_concurrency']} at once / 1 at a time",
                    f"{k(gc['charges_per_s'])} / {k(gs['charges_per_s'])} charges/s"))
    h = r.get('h_lanes')
    if h:
        out.append((f"(h) one worker, PAYQ_APPLY_LANES={' / '.join(h['runs'])}"
                    + ('' if r['lanes']['supported'] else ' (this worker ignores it)'),
                    f"{slash([x['commands_per_s'] for x in h['runs'].values()])} commands/s"))
    def split_text(cores, sep):
        return sep.join(f"{name} {cores[key]:.2f}" for key, name in
                        (('worker', 'worker'), ('postgresql', 'PostgreSQL'),
                         ('broker', 'broker'), ('producer', 'producer'),
                         ('other', 'other'), ('idle', 'idle'))
                        if cores.get(key) is not None)
    i = r.get('i_cpu_split')
    if i:
        out.append((f"(i) CPU during (b), in cores busy of {i['cpus']}",
                    split_text(i['cores'], ', ')))
    fs = [s for s in (r.get('f_latency') or {}).get('steps', []) if s.get('cpu_split')]
    if fs:
        out.append((f"(i) CPU during (f), producer at "
                    f"{' / '.join(str(s['percent_of_b']) for s in fs)}% of (b), "
                    f"in cores busy of {fs[0]['cpu_split']['cpus']}",
                    '; '.join(split_text(s['cpu_split']['cores'], ' + ') for s in fs)))
    j = r.get('j_peer')
    if j:
        modes = [(t, label) for t, label in (('per_command', 'per command'),
                                             ('per_poll', 'per poll batch')) if t in j]
        value = f"{slash([j[t]['commands_per_s'] for t, _ in modes])} commands/s"
        if 'check' in j:
            value += (f"; the same rows as payq on {count(j['check']['messages'])} commands of "
                      'the usual mix' if j['check']['identical'] else '; ROWS DIFFER from payq')
        out.append(('(j) Python peer (confluent-kafka, psycopg2), one transaction and sync '
                    f"commit {' / '.join(label for _, label in modes)}", value))
    ratios = []
    if a and b:
        ratios.append(f"(b)/(a) = {b['commands_per_s'] / a['commands_per_s_at_b_connections']:.2f}"
                      f" ((a) on {a['connections_of_b']})")
    if b and c:
        ratios.append(f"(b)/(c) = {b['commands_per_s'] / c['commands_per_s']:.0f}")
    if b and d:
        ratios.append(f"(d)/(b) = {d['commands_per_s'] / b['commands_per_s']:.2f}")
    if j and j.get('b_over_per_command') and j.get('b_over_per_poll'):
        ratios.append(f"(b)/(j) = {j['b_over_per_command']:.0f} / {j['b_over_per_poll']:.1f}")
    if g and g.get('charges_per_s_ratio'):
        ratios.append(f"(g) {g['charges_per_s_ratio']:.0f}x")
    if ratios:
        out.append(('ratios', ', '.join(ratios)))
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        r = json.load(f)
    lines = ['| figure | value |', '|---|---|']
    lines += [f'| {name} | {value} |' for name, value in rows(r)]
    met = [t['target'] for t in r.get('targets', []) if t['met']]
    missed = [f"{t['target']} ({t['value']})" for t in r.get('targets', []) if not t['met']]
    lines.append('')
    lines.append('Met: ' + (', '.join(met) or 'none') + '. Not met: ' +
                 (', '.join(missed) or 'none') + '.')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
