#!/usr/bin/env python3
"""benchlib.py - helpers for tests/bench/run: metrics parsing, /proc figures, report.

  benchlib.py scrape [--charges] URL...
                                       total messages applied (sum of payq_batch_size_sum);
                                       --charges adds the charges that succeeded at the
                                       payment channel (gateway mode)
  benchlib.py ledger URL               the sandbox gateway's /ledger: "charges multi" (multi:
                                       the orders charged more than once, comma-separated, or -)
  benchlib.py manifest FILE            the generator's manifest: "messages pays_applied"
  benchlib.py quantiles FILE... [--minus FILE...]
                                       p50 p99 p999 (seconds) of payq_commit_latency_seconds,
                                       buckets summed over the files given, less those of the
                                       --minus files (an earlier scrape of the same worker),
                                       then the largest finite bucket bound
  benchlib.py buckets FILE... [--minus FILE...]
                                       the same histogram as one JSON line: [[le, cumulative
                                       count], ...], the last le "+Inf"
  benchlib.py proc PID                 cpu_seconds peak_rss_kib
  benchlib.py cpusnapd [--pgdata DIR] [--broker-pidfile FILE]
                                       serves CPU snapshots: for each line "OUT PID..." on
                                       stdin, writes to OUT the CPU ticks so far (utime + stime,
                                       /proc) of the PIDs, of PostgreSQL (the postmaster of DIR,
                                       its live children and its reaped ones), of the broker,
                                       and the machine's busy and idle ticks (/proc/stat), as
                                       JSON, and answers "ok" on stdout
  benchlib.py cpusplit A B [NAME]      the CPU seconds between two snapshots by role (NAME,
                                       default worker; postgresql; broker; other: the rest of
                                       the machine's busy time; idle), one JSON line
  benchlib.py peer FILE                tests/bench/peer.py's JSON line: "messages
                                       commands_per_s cpu_seconds malformed"
  benchlib.py rowcheck MANIFEST NAME=FILE...
                                       tests/bench/rows.sql's JSON for each consumer: every one
                                       must match the generator's manifest (outcomes by type,
                                       duplicates, key_reuse, orders by status) and all must
                                       have one digest; prints one JSON line, exits 1 if not
  benchlib.py topics BROKERS PARTITIONS TOPIC...
                                       creates the topics (one-node broker; Debian's
                                       python3-confluent-kafka) and waits for their leaders
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
import time
import urllib.request

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')
TICK = os.sysconf('SC_CLK_TCK')


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


def latency_buckets(files, minus=(), metric='payq_commit_latency_seconds'):
    """A latency histogram's buckets (le -> cumulative count; payq_commit_latency_seconds
    unless --metric names another), summed over files, less the buckets of the minus
    files."""
    acc = {}
    for sign, group in ((1, files), (-1, minus)):
        for f in group:
            with open(f) as fp:
                for name, labels, v in parse(fp.read()):
                    if name != metric + '_bucket':
                        continue
                    le = re.search(r'le="([^"]+)"', labels).group(1)
                    le = float('inf') if le == '+Inf' else float(le)
                    acc[le] = acc.get(le, 0.0) + sign * v
    return acc


def split_minus(args):
    """FILE... [--metric NAME] [--minus FILE...] -> (files, minus, metric)."""
    metric = 'payq_commit_latency_seconds'
    if '--metric' in args:
        i = args.index('--metric')
        metric = args[i + 1]
        args = args[:i] + args[i + 2:]
    if '--minus' in args:
        i = args.index('--minus')
        return args[:i], args[i + 1:], metric
    return args, [], metric


def cmd_quantiles(args):
    acc = latency_buckets(*split_minus(args))
    b = list(acc.items())
    top = max((le for le in acc if not math.isinf(le)), default=0)
    print(f'{histogram_quantile(0.5, b):.6f} {histogram_quantile(0.99, b):.6f} '
          f'{histogram_quantile(0.999, b):.6f} {top}')


def cmd_buckets(args):
    acc = latency_buckets(*split_minus(args))
    print(json.dumps([[('+Inf' if math.isinf(le) else le), int(c)]
                      for le, c in sorted(acc.items())]))


def proc_stat(pid):
    """Fields of /proc/PID/stat from field 3 (state) on."""
    with open(f'/proc/{pid}/stat') as f:
        return f.read().rsplit(')', 1)[1].split()


def cmd_proc(pid):
    fields = proc_stat(pid)
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    ticks = int(fields[11]) + int(fields[12])
    cpu = ticks / TICK
    hwm = 0
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                hwm = int(line.split()[1])
    print(f'{cpu:.3f} {hwm}')


def postgres_ticks(pgdata):
    """utime + stime of the postmaster, of its children alive now and of those it has
    reaped (cutime + cstime), so that a backend that exits between two snapshots still
    counts once. None when there is no postmaster to read."""
    try:
        with open(os.path.join(pgdata, 'postmaster.pid')) as f:
            pm = int(f.readline())
        st = proc_stat(pm)
    except (OSError, ValueError):
        return None
    ticks = sum(int(x) for x in st[11:15])
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            st = proc_stat(d)
        except OSError:
            continue  # exited meanwhile: its parent has reaped it, or soon will
        if st[1] == str(pm):
            ticks += int(st[11]) + int(st[12])
    return ticks


def snapshot(pids, pgdata, pidfile):
    """CPU ticks so far: of the pids summed (app), of the pids after a '+' summed (app2,
    the producer of (f)), of PostgreSQL, of the broker, and the machine's busy and idle
    ticks."""
    with open('/proc/stat') as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    t = time.time()
    # user nice system idle iowait irq softirq steal (guest time is inside user).
    snap = {'t': t, 'cpus': os.cpu_count(),
            'busy': cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6] + cpu[7],
            'idle': cpu[3] + cpu[4], 'app': 0,
            'postgresql': postgres_ticks(pgdata) if pgdata else None, 'broker': None}
    key = 'app'
    for p in pids:
        if p == '+':
            key = 'app2'
            snap[key] = 0
            continue
        st = proc_stat(p)
        snap[key] += int(st[11]) + int(st[12])
    try:
        with open(pidfile) as f:
            st = proc_stat(int(f.read().strip()))
        snap['broker'] = int(st[11]) + int(st[12])
    except (TypeError, OSError, ValueError):
        pass
    return snap


def cmd_cpusnapd(args):
    """Serves snapshots on request, so that each is taken at once (no interpreter to start):
    reads lines "OUT PID..." on stdin, writes the snapshot to OUT, answers "ok" or "error
    TEXT" on stdout; ends at the end of its input."""
    pgdata = pidfile = None
    while args:
        a = args.pop(0)
        if a == '--pgdata':
            pgdata = args.pop(0)
        elif a == '--broker-pidfile':
            pidfile = args.pop(0)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            snap = snapshot(words[1:], pgdata, pidfile)
            with open(words[0], 'w') as f:
                json.dump(snap, f)
            print('ok', flush=True)
        except (OSError, ValueError, IndexError) as e:
            print(f'error {e}', flush=True)


def cmd_cpusplit(a_path, b_path, name='worker', name2='producer'):
    with open(a_path) as f:
        a = json.load(f)
    with open(b_path) as f:
        b = json.load(f)
    wall = b['t'] - a['t']

    def delta(k):
        if a.get(k) is None or b.get(k) is None:
            return None
        return (b[k] - a[k]) / TICK

    sec = {name: delta('app'), 'postgresql': delta('postgresql'), 'broker': delta('broker')}
    if 'app2' in a and 'app2' in b:
        sec[name2] = delta('app2')
    busy = delta('busy')
    sec['other'] = max(0.0, busy - sum(v for v in sec.values() if v is not None))
    sec['idle'] = delta('idle')
    print(json.dumps({
        'wall_s': round(wall, 3), 'cpus': b['cpus'],
        'seconds': {k: (None if v is None else round(v, 2)) for k, v in sec.items()},
        # Cores busy on average over the window: 1.0 is one core all the time.
        'cores': {k: (None if v is None else round(v / wall, 2)) for k, v in sec.items()},
    }))


def cmd_peer(path):
    with open(path) as f:
        p = json.loads(f.read().strip().splitlines()[-1])
    print(f"{p['messages']} {p['commands_per_s']} {p['cpu_seconds']} {p['malformed']}")


def cmd_rowcheck(manifest_path, pairs):
    with open(manifest_path) as f:
        m = json.load(f)
    want = {
        'outcomes': {t: {o: n for o, n in per.items() if n} for t, per in m['outcomes'].items()},
        'duplicates': m['duplicates'], 'key_reuse': m['anomalies']['key_reuse'],
        'orders': {s: m[f'{s}_orders'] for s in ('paid', 'cancelled', 'unpaid')
                   if m[f'{s}_orders']},
    }
    want['outcomes'] = {t: per for t, per in want['outcomes'].items() if per}
    got, bad = {}, []
    for pair in pairs:
        name, _, path = pair.partition('=')
        with open(path) as f:
            got[name] = json.load(f)
        for k, v in want.items():
            if got[name][k] != v:
                bad.append(f'{name}: {k} {json.dumps(got[name][k], sort_keys=True)}, the '
                           f'manifest expects {json.dumps(v, sort_keys=True)}')
    if len({g['digest'] for g in got.values()}) != 1:
        bad.append('the rows differ: ' + ', '.join(f"{n} {g['digest']}" for n, g in got.items()))
    print(json.dumps({'consumers': list(got), 'messages': m['messages'],
                      'outcomes': want['outcomes'], 'duplicates': want['duplicates'],
                      'key_reuse': want['key_reuse'], 'orders': want['orders'],
                      'payments': next(iter(got.values()))['payments'],
                      'digest': next(iter(got.values()))['digest'], 'identical': not bad}))
    if bad:
        sys.exit('bench: (j) check: ' + '; '.join(bad))


def cmd_topics(brokers, partitions, topics):
    """Creates the topics on a one-node broker (replication factor 1) with Debian's
    confluent-kafka, far faster than a JVM tool per topic, and waits until every partition
    has a leader."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({'bootstrap.servers': brokers})
    new = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics]
    for t, fut in admin.create_topics(new, operation_timeout=30).items():
        try:
            fut.result(timeout=60)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                sys.exit(f'creating topic {t}: {e}')
    deadline = time.monotonic() + 60
    while True:
        md = admin.list_topics(timeout=10)
        missing = [t for t in topics
                   if t not in md.topics or md.topics[t].error is not None
                   or len(md.topics[t].partitions) != partitions
                   or any(p.leader < 0 for p in md.topics[t].partitions.values())]
        if not missing:
            return
        if time.monotonic() > deadline:
            sys.exit(f'topics without a leader for every partition after 60 s: {missing}')
        time.sleep(0.2)


def cmd_pgbench(path):
    with open(path) as f:
        text = f.read()
    m = re.search(r'^tps = ([0-9.]+)', text, re.M)
    print(m.group(1) if m else 0)


# ---- report ----

def num(fig, key):
    v = fig.get(key)
    try:
        return float(v)
    except (TypeError, ValueError):
        return float('nan')


def rnd(x, nd=1):
    return None if x is None or math.isnan(x) or math.isinf(x) else round(x, nd)


def ratio(a, b, nd=2):
    return rnd(a / b, nd) if a and b and not math.isnan(a) and not math.isnan(b) else None


def build_results(fig):
    """The JSON of a run from its figures. A phase left out (--only) has no figures: it is
    left out of the JSON, the table and the targets."""
    def n(k):
        return num(fig, k)

    def js(k):
        return json.loads(fig[k]) if k in fig else None

    def ilist(k):
        return [int(x) for x in fig.get(k, '').split(',') if x]

    ms = 1000.0
    top = n('lat_top')
    res = {
        'profile': fig.get('profile'),
        'machine': {'cpus': int(n('cpus')), 'loadavg_1m_at_start': n('load_start')},
        'worker_batch_max': int(n('batch_max')),
        'worker_what_if': {'pgoptions': fig.get('worker_pgoptions', ''),
                           'args': fig.get('worker_args', '')},
        # PAYQ_APPLY_LANES: whether the worker knows it (its --help lists it), its default
        # there, and the value (b), (d), (e), (f) ran with.
        'lanes': {'supported': fig.get('lanes_supported') == '1',
                  'worker_default': int(n('lanes_default')) if fig.get('lanes_default', '-')
                  != '-' else None,
                  'used': int(n('lanes_used'))},
    }
    if fig.get('phases'):
        res['phases'] = fig['phases']
    if fig.get('a_clients'):
        by = {str(c): rnd(n(f'a_tps_c{c}') * n('batch_max')) for c in ilist('a_clients')}
        lanes = str(res['lanes']['used'])
        res['a_db_ceiling'] = {
            'batch_size': int(n('batch_max')), 'seconds': n('a_seconds'),
            'commands_per_s_by_connections': by,
            'commands_per_s': by['1'],
            'connections_of_b': int(lanes), 'commands_per_s_at_b_connections': by[lanes],
        }
    for ph, title in (('b', 'b_worker_batch'), ('c', 'c_worker_per_message')):
        if ph + '_rate' not in fig:
            continue
        res[title] = {
            'commands': int(n(ph + '_commands')),
            'commands_per_s': rnd(n(ph + '_rate')),
            'latency_p50_ms': rnd(n(ph + '_p50') * ms, 2),
            'latency_p99_ms': rnd(n(ph + '_p99') * ms, 2),
            'cpu_seconds_per_100k': rnd(n(ph + '_cpu') / n(ph + '_commands') * 1e5, 3),
            'peak_rss_mib': rnd(n(ph + '_rss') / 1024.0, 2),
            # A quantile in the +Inf bucket is reported as the largest finite bound.
            'latency_at_top_bucket': n(ph + '_p99') >= top,
        }
    if 'b_worker_batch' in res:
        res['b_worker_batch']['lanes'] = int(n('b_lanes'))
    if 'c_worker_per_message' in res:
        res['c_worker_per_message']['settings'] = 'PAYQ_BATCH_MAX=1 PAYQ_COMMIT_MODE=sync'
    if 'i_split' in fig:
        res['i_cpu_split'] = dict(js('i_split'), phase='b')
    if 'd_rate' in fig:
        res['d_replay'] = {'commands': int(n('d_commands')), 'commands_per_s': rnd(n('d_rate'))}
    if 'e_workers' in fig:
        res['e_scale'] = {'partitions': int(n('partitions')), 'commands': int(n('e_commands')),
                          'commands_per_s': {str(w): rnd(n(f'e{w}_rate'))
                                             for w in ilist('e_workers')}}
    if 'f_fractions' in fig:
        steps = []
        for p in ilist('f_fractions'):
            k = f'f{p}'
            steps.append({
                'percent_of_b': p, 'target_rate': rnd(n(k + '_target_rate')),
                'achieved_rate': rnd(n(k + '_rate')), 'commands': int(n(k + '_commands')),
                'latency_p50_ms': rnd(n(k + '_p50') * ms, 2),
                'latency_p99_ms': rnd(n(k + '_p99') * ms, 2),
                'latency_p999_ms': rnd(n(k + '_p999') * ms, 2),
                'poll_latency_p99_ms': rnd(n(k + '_poll_p99') * ms, 2) if k + '_poll_p99' in fig
                else None,
                'latency_at_top_bucket': n(k + '_p999') >= top,
                'buckets': js(k + '_buckets'),
                'cpu_split': js(k + '_split') if k + '_split' in fig else None,
            })
        res['f_latency'] = {'lanes': int(n('f_lanes')), 'seconds_per_step': n('f_seconds'),
                            'steps': steps}
    if 'gc_rate' in fig and 'gs_rate' in fig:
        g = res['g_gateway'] = {'settings': fig.get('g_settings', ''),
                                'latency_ms': int(n('g_latency_ms'))}
        for ph, title in (('gc', 'concurrent'), ('gs', 'sequential')):
            g[title] = {
                'gateway_concurrency': int(n(ph + '_concurrency')),
                'commands': int(n(ph + '_commands')),
                'commands_per_s': rnd(n(ph + '_rate')),
                'pays_charged': int(n(ph + '_charges')),
                'charges_per_s': rnd(n(ph + '_charge_rate')),
                'latency_p50_ms': rnd(n(ph + '_p50') * ms, 2),
                'latency_p99_ms': rnd(n(ph + '_p99') * ms, 2),
                'latency_at_top_bucket': n(ph + '_p99') >= top,
                'cpu_seconds_per_100k': rnd(n(ph + '_cpu') / n(ph + '_commands') * 1e5, 3),
                'peak_rss_mib': rnd(n(ph + '_rss') / 1024.0, 2),
                # Checked by tests/bench/run: the sandbox's charges equal the manifest's
                # applied pays, and no order was charged twice.
                'manifest_pays_applied': int(n(ph + '_expected')),
                'sandbox_charges': int(n(ph + '_sandbox_charges')),
                'multi_charged_orders': int(n(ph + '_multi')),
            }
        g['charges_per_s_ratio'] = ratio(n('gc_charge_rate'), n('gs_charge_rate'))
    if 'h_lanes' in fig:
        res['h_lanes'] = {'commands': int(n('h_commands')), 'runs': {}}
        for ln in ilist('h_lanes'):
            k = f'h{ln}'
            res['h_lanes']['runs'][str(ln)] = {
                'commands_per_s': rnd(n(k + '_rate')),
                'cpu_seconds_per_100k': rnd(n(k + '_cpu') / n('h_commands') * 1e5, 3),
                'peak_rss_mib': rnd(n(k + '_rss') / 1024.0, 2),
                'cpu_split': js(k + '_split'),
            }
    if 'j1_rate' in fig or 'j2_rate' in fig or 'j_check' in fig:
        j = res['j_peer'] = {}
        for k, title in (('j1', 'per_command'), ('j2', 'per_poll')):
            if k + '_rate' in fig:
                j[title] = {'commands': int(n(k + '_messages')),
                            'commands_per_s': rnd(n(k + '_rate')),
                            'cpu_seconds_per_100k': rnd(n(k + '_cpu') / n(k + '_messages') * 1e5,
                                                        3)}
        if 'per_poll' in j:
            j['per_poll']['batch'] = int(n('j2_batch'))
        b = (res.get('b_worker_batch') or {}).get('commands_per_s')
        for title in ('per_command', 'per_poll'):
            if title in j and b:
                j[f'b_over_{title}'] = ratio(b, j[title]['commands_per_s'])
        if 'j_check' in fig:
            j['check'] = js('j_check')
    return res


def targets_of(res, fig):
    def rate(key):
        return (res.get(key) or {}).get('commands_per_s') or float('nan')

    t = []
    b, c, d = rate('b_worker_batch'), rate('c_worker_per_message'), rate('d_replay')
    if 'b_worker_batch' in res and 'c_worker_per_message' in res:
        t.append(('(b)/(c) >= 10', b / c, 10, True))
    if 'b_worker_batch' in res and 'a_db_ceiling' in res:
        a = res['a_db_ceiling']
        t.append((f"(b)/(a) >= 0.6, (a) on {a['connections_of_b']} connection(s) as (b)'s lanes",
                  b / (a['commands_per_s_at_b_connections'] or float('nan')), 0.6, True))
    if 'd_replay' in res:
        t.append(('(d)/(b) >= 1.5', d / b, 1.5, True))
    for s in (res.get('f_latency') or {}).get('steps', []):
        if s['percent_of_b'] == 50:
            v = s['latency_p99_ms']
            t.append(('(f) p99 <= 100 ms at 50% of (b)', v if v is not None else float('nan'),
                      100, False))
    if 'b_worker_batch' in res:
        t.append(('(b) >= 40k commands/s (moonshot)', b, 40000, True))
    pp = (res.get('j_peer') or {}).get('b_over_per_poll')
    if pp is not None:
        t.append(('(b) / the Python peer batched per poll >= 5', pp, 5, True))
    rss_keys = [k for k in fig if re.fullmatch(r'(b|c|h\d+)_rss|e_rss_max', k)]
    if rss_keys:
        t.append(('worker peak RSS <= 64 MiB', max(num(fig, k) for k in rss_keys) / 1024.0, 64,
                  False))
    if 'g_gateway' in res:
        gr = res['g_gateway']['charges_per_s_ratio']
        t.append((f"(g) charges/s, {res['g_gateway']['concurrent']['gateway_concurrency']}"
                  f" at once / 1 at a time >= 10",
                  gr if gr is not None else float('nan'), 10, True))
    return [{'target': name, 'value': rnd(v, 2), 'threshold': th,
             'met': bool(not math.isnan(v) and (v >= th if ge else v <= th))}
            for name, v, th, ge in t]


def fmt(v, nd=0):
    return 'n/a' if v is None else f'{v:,.{nd}f}'


def cpu_splits(res, short=False):
    """(label, split) for every CPU split of the run: (b), each run of (h), each (f) step
    (labelled shorter for the picture when short)."""
    splits = []
    if 'i_cpu_split' in res:
        splits.append(('(b)', res['i_cpu_split']))
    for ln, run in res.get('h_lanes', {}).get('runs', {}).items():
        if run.get('cpu_split'):
            splits.append((f'(h) {ln} lane(s)', run['cpu_split']))
    for st in res.get('f_latency', {}).get('steps', []):
        if st.get('cpu_split'):
            label = (f"(f) {st['percent_of_b']}% live" if short
                     else f"(f) live at {st['percent_of_b']}% of (b)")
            splits.append((label, st['cpu_split']))
    return splits


def markdown(res, top_ms):
    """The per-phase table of results.md (README's table is tests/bench/table.py's)."""
    def lat(v):
        return f'>= {fmt(v, 0)}' if v is not None and v >= top_ms else fmt(v, 1)

    lines = [
        f"payq benchmark, profile {res['profile']}, {res['machine']['cpus']} CPUs, "
        f"load average {res['machine']['loadavg_1m_at_start']} at start, PAYQ_APPLY_LANES="
        f"{res['lanes']['used']}"
        + ('' if res['lanes']['supported'] else ' (this worker ignores PAYQ_APPLY_LANES)')
        + (f", phases {res['phases']} only" if 'phases' in res else '')
        + (f"; WHAT-IF worker settings: PGOPTIONS {res['worker_what_if']['pgoptions']!r}, "
           f"args {res['worker_what_if']['args']!r}"
           if any(res['worker_what_if'].values()) else ''),
        '',
        '| Phase | Commands | Commands/s | p50 ms | p99 ms | p999 ms | CPU s / 100k | '
        'Peak RSS MiB |',
        '|---|---:|---:|---:|---:|---:|---:|---:|',
    ]
    if 'a_db_ceiling' in res:
        a = res['a_db_ceiling']
        for c, v in a['commands_per_s_by_connections'].items():
            lines.append(f"| (a) DB ceiling: pgbench, worker SQL, batch {a['batch_size']}, "
                         f"{c} conn ({a['seconds']:.0f} s) | | {fmt(v)} | | | | | |")

    def worker_row(label, w):
        return (f"| {label} | {w['commands']:,} | {fmt(w['commands_per_s'])} | "
                f"{lat(w['latency_p50_ms'])} | {lat(w['latency_p99_ms'])} | | "
                f"{fmt(w['cpu_seconds_per_100k'], 2)} | {fmt(w['peak_rss_mib'], 1)} |")

    if 'b_worker_batch' in res:
        lines.append(worker_row(f"(b) worker, batch mode, preproduced backlog, "
                                f"{res['b_worker_batch']['lanes']} lane(s)",
                                res['b_worker_batch']))
    if 'c_worker_per_message' in res:
        lines.append(worker_row('(c) worker, per message (batch 1, sync offset commit)',
                                res['c_worker_per_message']))
    if 'd_replay' in res:
        lines.append(f"| (d) replay, every command a duplicate | {res['d_replay']['commands']:,} | "
                     f"{fmt(res['d_replay']['commands_per_s'])} | | | | | |")
    for w, v in res.get('e_scale', {}).get('commands_per_s', {}).items():
        lines.append(f"| (e) scale: {w} worker(s), {res['e_scale']['partitions']} partitions | "
                     f"{res['e_scale']['commands']:,} | {fmt(v)} | | | | | |")
    for s in res.get('f_latency', {}).get('steps', []):
        lines.append(f"| (f) live, producer at {s['percent_of_b']}% of (b): "
                     f"{fmt(s['target_rate'])}/s (achieved {fmt(s['achieved_rate'])}/s) | "
                     f"{s['commands']:,} | | {lat(s['latency_p50_ms'])} | "
                     f"{lat(s['latency_p99_ms'])} | {lat(s['latency_p999_ms'])} | | |")
    if 'g_gateway' in res:
        gc, gs = res['g_gateway']['concurrent'], res['g_gateway']['sequential']
        lines.append(worker_row(
            f"(g) gateway mode, up to {gc['gateway_concurrency']} charges at once, sandbox "
            f"{res['g_gateway']['latency_ms']} ms: {gc['pays_charged']:,} pays charged, "
            f"{fmt(gc['charges_per_s'])} charges/s", gc))
        lines.append(worker_row(
            f"(g') same, one charge at a time (PAYQ_GATEWAY_CONCURRENCY=1): "
            f"{gs['pays_charged']:,} pays charged, {fmt(gs['charges_per_s'], 1)} charges/s", gs))
    h = res.get('h_lanes')
    for ln, run in (h or {}).get('runs', {}).items():
        lines.append(f"| (h) one worker, PAYQ_APPLY_LANES={ln} | {h['commands']:,} | "
                     f"{fmt(run['commands_per_s'])} | | | | "
                     f"{fmt(run['cpu_seconds_per_100k'], 2)} | {fmt(run['peak_rss_mib'], 1)} |")
    j = res.get('j_peer', {})
    for title, label in (('per_command', 'one transaction and sync commit per command'),
                         ('per_poll', 'one transaction and sync commit per poll batch')):
        if title in j:
            lines.append(f"| (j) Python peer, {label} | {j[title]['commands']:,} | "
                         f"{fmt(j[title]['commands_per_s'])} | | | | "
                         f"{fmt(j[title]['cpu_seconds_per_100k'], 2)} | |")
    splits = cpu_splits(res)
    if splits:
        lines += ['', f"(i) CPU split, in cores busy on average ({res['machine']['cpus']} "
                      'in all), over each drain and over the middle of each live step:', '',
                  '| During | Wall s | worker | PostgreSQL | broker | producer | other | idle |',
                  '|---|---:|---:|---:|---:|---:|---:|---:|']
        for label, s in splits:
            c = s['cores']
            lines.append(f"| {label} | {fmt(s['wall_s'], 1)} | {fmt(c['worker'], 2)} | "
                         f"{fmt(c['postgresql'], 2)} | {fmt(c['broker'], 2)} | "
                         f"{fmt(c['producer'], 2) if c.get('producer') is not None else ''} | "
                         f"{fmt(c['other'], 2)} | {fmt(c['idle'], 2)} |")
    if 'check' in j:
        ck = j['check']
        lines += ['', f"(j) check: {', '.join(ck['consumers'])} applied the same "
                      f"{ck['messages']:,} messages of the usual mix into identical rows "
                      f"(digest {ck['digest']}), matching the generator's manifest: "
                      + json.dumps(ck['outcomes'], sort_keys=True)
                      + f", duplicates {ck['duplicates']}, key_reuse {ck['key_reuse']}."]
    ratios = [f"(b)/(j per command) = {fmt(j['b_over_per_command'], 1)}"
              if j.get('b_over_per_command') else None,
              f"(b)/(j per poll) = {fmt(j['b_over_per_poll'], 2)}"
              if j.get('b_over_per_poll') else None]
    lines += ['', '| Target | Value | Met |', '|---|---:|---|']
    for t in res['targets']:
        lines.append(f"| {t['target']} | {fmt(t['value'], 2)} | "
                     f"{'met' if t['met'] else 'NOT met'} |")
    if any(ratios):
        lines += ['', 'Ratios without a target: ' + ', '.join(r for r in ratios if r) + '.']
    if res['notes']:
        lines += ['', res['notes']]
    return '\n'.join(lines) + '\n'


# Keys whose values need not be positive numbers in the smoke check.
SMOKE_SKIP = {'targets', 'notes', 'profile', 'settings', 'latency_at_top_bucket',
              'worker_what_if', 'phases', 'multi_charged_orders', 'buckets', 'lanes',
              'cpu_split', 'i_cpu_split', 'check'}


def smoke_check(res):
    bad = []

    def walk(path, v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k not in SMOKE_SKIP:
                    walk(f'{path}.{k}', x)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(f'{path}[{i}]', x)
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v <= 0:
            bad.append(f'{path}={v!r}')
    walk('', res)
    for t in res['targets']:
        if not isinstance(t['value'], (int, float)) or t['value'] <= 0:
            bad.append(f"target {t['target']}={t['value']!r}")
    # The CPU split: every role was found and nothing is negative. (A smoke drain lasts a
    # fraction of a second, a few 10 ms ticks: a role may well have used none.)
    for _, s in cpu_splits(res):
        if not s['wall_s'] > 0:
            bad.append(f"cpu split wall_s={s['wall_s']!r}")
        for k, v in s['seconds'].items():
            if v is None or v < 0:
                bad.append(f'cpu split {k}={v!r}')
    for s in res.get('f_latency', {}).get('steps', []):
        if not s['buckets'] or s['buckets'][-1][1] < s['commands']:
            bad.append(f"(f) {s['percent_of_b']}%: {s['buckets'] and s['buckets'][-1][1]} "
                       f"latencies observed for {s['commands']} commands")
    if 'check' in res.get('j_peer', {}) and not res['j_peer']['check']['identical']:
        bad.append('(j) check: the rows differ')
    return bad


def cmd_report(figfile, jsonfile, mdfile, smoke):
    fig = {}
    with open(figfile) as f:
        for line in f:
            if line.strip():
                k, _, v = line.strip().partition(' ')
                fig[k] = v.strip()
    res = build_results(fig)
    res['targets'] = targets_of(res, fig)
    res['notes'] = fig.get('notes', '')
    with open(jsonfile, 'w') as f:
        json.dump(res, f, indent=2)
        f.write('\n')
    md = markdown(res, num(fig, 'lat_top') * 1000.0)
    with open(mdfile, 'w') as f:
        f.write(md)
    print(md)
    if smoke:
        with open(jsonfile) as f:
            json.load(f)
        bad = smoke_check(res)
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
    elif cmd == 'buckets':
        cmd_buckets(args)
    elif cmd == 'proc':
        cmd_proc(args[0])
    elif cmd == 'cpusnapd':
        cmd_cpusnapd(args)
    elif cmd == 'cpusplit':
        cmd_cpusplit(*args[:3])
    elif cmd == 'peer':
        cmd_peer(args[0])
    elif cmd == 'rowcheck':
        cmd_rowcheck(args[0], args[1:])
    elif cmd == 'topics':
        cmd_topics(args[0], int(args[1]), args[2:])
    elif cmd == 'pgbench':
        cmd_pgbench(args[0])
    elif cmd == 'report':
        cmd_report(args[0], args[1], args[2], '--smoke' in args[3:])
    else:
        sys.exit(__doc__)


if __name__ == '__main__':
    main()
