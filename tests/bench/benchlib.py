#!/usr/bin/env python3
"""benchlib.py - helpers for tests/bench/run: metrics parsing, /proc figures, report.

  benchlib.py scrape [--charges] URL...
                                       total messages applied (sum of payq_batch_size_sum);
                                       --charges adds the charges that succeeded at the
                                       payment channel (gateway mode)
  benchlib.py ledger URL               the sandbox gateway's /ledger: "charges multi" (multi:
                                       the orders charged more than once, comma-separated, or -)
  benchlib.py manifest FILE            the generator's manifest: "messages pays_applied"
  benchlib.py quantiles FILE...        p50 p99 (seconds) of payq_commit_latency_seconds,
                                       buckets summed over every scrape file given
  benchlib.py proc PID                 cpu_seconds peak_rss_kib
  benchlib.py pgbench FILE             tps from pgbench output
  benchlib.py report FIGURES JSON MD [--smoke]
                                       FIGURES is a file of "key value" lines; writes JSON,
                                       the markdown table, and with --smoke checks that
                                       every figure is a positive number
"""
import json
import math
import os
import re
import sys
import urllib.request

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')


def parse(text):
    for line in text.splitlines():
        if not line or line.startswith('#'):
            continue
        m = SAMPLE.match(line)
        if m:
            yield m.group(1), m.group(2) or '', float(m.group(3))


def fetch(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.read().decode()


def cmd_scrape(urls, charges=False):
    total = charged = 0.0
    for u in urls:
        try:
            text = fetch(u)
        except OSError:
            print('-1 -1' if charges else -1)
            return
        for name, labels, v in parse(text):
            if name == 'payq_batch_size_sum':
                total += v
            elif name == 'payq_gateway_requests_total' and 'op="charge"' in labels and \
                    'result="succeeded"' in labels:
                charged += v
    print(f'{int(total)} {int(charged)}' if charges else int(total))


def cmd_ledger(url):
    led = json.loads(fetch(url))
    multi = ','.join(led['multi_charged_orders']) or '-'
    print(f"{int(led['charges'])} {multi}")


def cmd_manifest(path):
    with open(path) as f:
        m = json.load(f)
    print(f"{int(m['messages'])} {int(m['outcomes']['pay']['applied'])}")


def histogram_quantile(q, buckets):
    """Prometheus' histogram_quantile: linear interpolation inside the bucket."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return float('nan')
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if math.isinf(le):
                # Above the largest finite bound: report that bound, as Prometheus does.
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return prev_le


def cmd_quantiles(files):
    acc = {}
    for f in files:
        with open(f) as fp:
            for name, labels, v in parse(fp.read()):
                if name != 'payq_commit_latency_seconds_bucket':
                    continue
                le = re.search(r'le="([^"]+)"', labels).group(1)
                le = float('inf') if le == '+Inf' else float(le)
                acc[le] = acc.get(le, 0.0) + v
    b = list(acc.items())
    top = max((le for le in acc if not math.isinf(le)), default=0)
    print(f'{histogram_quantile(0.5, b):.6f} {histogram_quantile(0.99, b):.6f} {top}')


def cmd_proc(pid):
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    ticks = int(fields[11]) + int(fields[12])
    cpu = ticks / os.sysconf('SC_CLK_TCK')
    hwm = 0
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                hwm = int(line.split()[1])
    print(f'{cpu:.3f} {hwm}')


def cmd_pgbench(path):
    with open(path) as f:
        text = f.read()
    m = re.search(r'^tps = ([0-9.]+)', text, re.M)
    print(m.group(1) if m else 0)


def num(fig, key):
    v = fig.get(key)
    try:
        return float(v)
    except (TypeError, ValueError):
        return float('nan')


def cmd_report(figfile, jsonfile, mdfile, smoke):
    fig = {}
    with open(figfile) as f:
        for line in f:
            if line.strip():
                k, _, v = line.strip().partition(' ')
                fig[k] = v.strip()

    def n(k):
        return num(fig, k)

    def r(x, nd=1):
        return None if x is None or math.isnan(x) or math.isinf(x) else round(x, nd)

    # A phase left out (--only) has no figures: it is left out of the JSON, the table
    # and the targets.
    ms = 1000.0
    res = {
        'profile': fig.get('profile'),
        'machine': {'cpus': int(n('cpus')), 'loadavg_1m_at_start': n('load_start')},
        'worker_batch_max': int(n('batch_max')),
        'worker_what_if': {'pgoptions': fig.get('worker_pgoptions', ''),
                           'args': fig.get('worker_args', '')},
    }
    if fig.get('phases'):
        res['phases'] = fig['phases']
    if 'a_tps' in fig:
        res['a_db_ceiling'] = {
            'clients': int(n('a_clients')), 'batch_size': int(n('batch_max')),
            'seconds': n('a_seconds'), 'tps': r(n('a_tps'), 2),
            'commands_per_s': r(n('a_tps') * n('batch_max')),
            'commands_per_s_2_clients': r(n('a2_tps') * n('batch_max')),
        }
    for ph, title in (('b', 'b_worker_batch'), ('c', 'c_worker_per_message')):
        if ph + '_rate' not in fig:
            continue
        res[title] = {
            'commands': int(n(ph + '_commands')),
            'commands_per_s': r(n(ph + '_rate')),
            'latency_p50_ms': r(n(ph + '_p50') * ms, 2),
            'latency_p99_ms': r(n(ph + '_p99') * ms, 2),
            'cpu_seconds_per_100k': r(n(ph + '_cpu') / n(ph + '_commands') * 1e5, 3),
            'peak_rss_mib': r(n(ph + '_rss') / 1024.0, 2),
        }
        # A quantile in the +Inf bucket is reported as the largest finite bound.
        res[title]['latency_at_top_bucket'] = n(ph + '_p99') >= n('lat_top')
    if 'c_worker_per_message' in res:
        res['c_worker_per_message']['settings'] = 'PAYQ_BATCH_MAX=1 PAYQ_COMMIT_MODE=sync'
    if 'd_rate' in fig:
        res['d_replay'] = {'commands': int(n('d_commands')), 'commands_per_s': r(n('d_rate'))}
    if 'e_workers' in fig:
        res['e_scale'] = {'partitions': int(n('partitions')), 'commands': int(n('e_commands')),
                          'commands_per_s': {}}
        for w in fig.get('e_workers', '').split(','):
            if w:
                res['e_scale']['commands_per_s'][w] = r(n(f'e{w}_rate'))
    if 'f_rate' in fig:
        res['f_moderate_load'] = {
            'target_rate': r(n('f_target_rate')), 'commands': int(n('f_commands')),
            'achieved_rate': r(n('f_rate')),
            'latency_p50_ms': r(n('f_p50') * ms, 2), 'latency_p99_ms': r(n('f_p99') * ms, 2),
            'latency_at_top_bucket': n('f_p99') >= n('lat_top'),
        }
    if 'gc_rate' in fig and 'gs_rate' in fig:
        g = res['g_gateway'] = {'settings': fig.get('g_settings', '')}
        for ph, title in (('gc', 'concurrent'), ('gs', 'sequential')):
            g[title] = {
                'gateway_concurrency': int(n(ph + '_concurrency')),
                'commands': int(n(ph + '_commands')),
                'commands_per_s': r(n(ph + '_rate')),
                'pays_charged': int(n(ph + '_charges')),
                'charges_per_s': r(n(ph + '_charge_rate')),
                'latency_p50_ms': r(n(ph + '_p50') * ms, 2),
                'latency_p99_ms': r(n(ph + '_p99') * ms, 2),
                'latency_at_top_bucket': n(ph + '_p99') >= n('lat_top'),
                'cpu_seconds_per_100k': r(n(ph + '_cpu') / n(ph + '_commands') * 1e5, 3),
                'peak_rss_mib': r(n(ph + '_rss') / 1024.0, 2),
                # Checked by tests/bench/run: the sandbox's charges equal the manifest's
                # applied pays, and no order was charged twice.
                'manifest_pays_applied': int(n(ph + '_expected')),
                'sandbox_charges': int(n(ph + '_sandbox_charges')),
                'multi_charged_orders': int(n(ph + '_multi')),
            }
        g['charges_per_s_ratio'] = r(n('gc_charge_rate') / n('gs_charge_rate'), 2)

    def rate(key):
        return (res.get(key) or {}).get('commands_per_s') or float('nan')

    targets = []
    b, c, a, d = (rate('b_worker_batch'), rate('c_worker_per_message'),
                  rate('a_db_ceiling'), rate('d_replay'))
    if 'b_worker_batch' in res and 'c_worker_per_message' in res:
        targets.append(('(b)/(c) >= 10', b / c, 10, True))
    if 'b_worker_batch' in res and 'a_db_ceiling' in res:
        targets.append(('(b)/(a) >= 0.6', b / a, 0.6, True))
    if 'd_replay' in res:
        targets.append(('(d)/(b) >= 1.5', d / b, 1.5, True))
    if 'f_moderate_load' in res:
        f99 = res['f_moderate_load']['latency_p99_ms']
        targets.append(('(f) p99 <= 100 ms', f99 if f99 is not None else float('nan'), 100,
                        False))
    rss_keys = [k for k in ('b_rss', 'c_rss', 'e_rss_max') if k in fig]
    if rss_keys:
        targets.append(('worker peak RSS <= 64 MiB', max(n(k) for k in rss_keys) / 1024.0, 64,
                        False))
    if 'g_gateway' in res:
        gr = res['g_gateway']['charges_per_s_ratio']
        targets.append((f"(g) charges/s, {res['g_gateway']['concurrent']['gateway_concurrency']}"
                        f" at once / 1 at a time >= 10",
                        gr if gr is not None else float('nan'), 10, True))
    res['targets'] = [
        {'target': t, 'value': r(v, 2), 'threshold': th,
         'met': bool(not math.isnan(v) and (v >= th if ge else v <= th))}
        for t, v, th, ge in targets
    ]
    res['notes'] = fig.get('notes', '')

    with open(jsonfile, 'w') as f:
        json.dump(res, f, indent=2)
        f.write('\n')

    top_ms = n('lat_top') * ms

    def fmt(v, nd=0):
        if v is None:
            return 'n/a'
        return f'{v:,.{nd}f}'

    def lat(v):
        return f'>= {fmt(v, 0)}' if v is not None and v >= top_ms else fmt(v, 1)

    lines = [
        f"payq benchmark, profile {res['profile']}, {res['machine']['cpus']} CPUs, "
        f"load average {res['machine']['loadavg_1m_at_start']} at start"
        + (f", phases {res['phases']} only" if 'phases' in res else '')
        + (f"; WHAT-IF worker settings: PGOPTIONS {res['worker_what_if']['pgoptions']!r}, "
           f"args {res['worker_what_if']['args']!r}"
           if any(res['worker_what_if'].values()) else ''),
        '',
        '| Phase | Commands | Commands/s | p50 ms | p99 ms | CPU s / 100k | Peak RSS MiB |',
        '|---|---:|---:|---:|---:|---:|---:|',
    ]
    if 'a_db_ceiling' in res:
        lines += [
            f"| (a) DB ceiling: pgbench, worker SQL, batch {res['worker_batch_max']}, 1 conn "
            f"({res['a_db_ceiling']['seconds']:.0f} s) | | {fmt(a)} | | | | |",
            f"| (a') same, 2 conns | | {fmt(res['a_db_ceiling']['commands_per_s_2_clients'])}"
            ' | | | | |',
        ]

    def worker_row(label, w):
        return (f"| {label} | {w['commands']:,} | {fmt(w['commands_per_s'])} | "
                f"{lat(w['latency_p50_ms'])} | {lat(w['latency_p99_ms'])} | "
                f"{fmt(w['cpu_seconds_per_100k'], 2)} | {fmt(w['peak_rss_mib'], 1)} |")

    if 'b_worker_batch' in res:
        lines.append(worker_row('(b) worker, batch mode, preproduced backlog',
                                res['b_worker_batch']))
    if 'c_worker_per_message' in res:
        lines.append(worker_row('(c) worker, per message (batch 1, sync offset commit)',
                                res['c_worker_per_message']))
    if 'd_replay' in res:
        lines.append(f"| (d) replay, every command a duplicate | {res['d_replay']['commands']:,} | "
                     f"{fmt(d)} | | | | |")
    for w, v in res.get('e_scale', {}).get('commands_per_s', {}).items():
        lines.append(f"| (e) scale: {w} worker(s), {res['e_scale']['partitions']} partitions | "
                     f"{res['e_scale']['commands']:,} | {fmt(v)} | | | | |")
    if 'f_moderate_load' in res:
        fm = res['f_moderate_load']
        lines.append(f"| (f) moderate load: producer at {fmt(fm['target_rate'])}/s "
                     f"(achieved {fmt(fm['achieved_rate'])}/s) | {fm['commands']:,} | | "
                     f"{lat(fm['latency_p50_ms'])} | {lat(fm['latency_p99_ms'])} | | |")
    if 'g_gateway' in res:
        gc, gs = res['g_gateway']['concurrent'], res['g_gateway']['sequential']
        lines.append(worker_row(
            f"(g) gateway mode, up to {gc['gateway_concurrency']} charges at once, sandbox "
            f"{fig.get('g_latency_ms', '?')} ms: {gc['pays_charged']:,} pays charged, "
            f"{fmt(gc['charges_per_s'])} charges/s", gc))
        lines.append(worker_row(
            f"(g') same, one charge at a time (PAYQ_GATEWAY_CONCURRENCY=1): "
            f"{gs['pays_charged']:,} pays charged, {fmt(gs['charges_per_s'], 1)} charges/s", gs))
    lines += ['', '| Target | Value | Met |', '|---|---:|---|']
    for t in res['targets']:
        lines.append(f"| {t['target']} | {fmt(t['value'], 2)} | "
                     f"{'met' if t['met'] else 'NOT met'} |")
    if res['notes']:
        lines += ['', res['notes']]
    md = '\n'.join(lines) + '\n'
    with open(mdfile, 'w') as f:
        f.write(md)
    print(md)

    if smoke:
        json.load(open(jsonfile))
        bad = []

        def walk(path, v):
            if isinstance(v, dict):
                for k, x in v.items():
                    if k in ('targets', 'notes', 'profile', 'settings', 'latency_at_top_bucket',
                             'worker_what_if', 'phases', 'multi_charged_orders'):
                        continue
                    walk(f'{path}.{k}', x)
            elif isinstance(v, bool) or not isinstance(v, (int, float)) or \
                    math.isnan(v) or v <= 0:
                bad.append(f'{path}={v!r}')
        walk('', res)
        for t in res['targets']:
            if not isinstance(t['value'], (int, float)) or t['value'] <= 0:
                bad.append(f"target {t['target']}={t['value']!r}")
        if bad:
            sys.exit('bench smoke: not a positive number: ' + ', '.join(bad))
        print('bench smoke: every figure is a positive number; the JSON parses')


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == 'scrape':
        cmd_scrape([a for a in args if a != '--charges'], '--charges' in args)
    elif cmd == 'ledger':
        cmd_ledger(args[0])
    elif cmd == 'manifest':
        cmd_manifest(args[0])
    elif cmd == 'quantiles':
        cmd_quantiles(args)
    elif cmd == 'proc':
        cmd_proc(args[0])
    elif cmd == 'pgbench':
        cmd_pgbench(args[0])
    elif cmd == 'report':
        cmd_report(args[0], args[1], args[2], '--smoke' in args[3:])
    else:
        sys.exit(__doc__)


if __name__ == '__main__':
    main()
