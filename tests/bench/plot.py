#!/usr/bin/python3
"""plot.py - draws one run of tests/bench/run: throughput by phase, the latency distribution of
(f) and the CPU split of (i), from the run's JSON, with Debian's python3-matplotlib.

usage: tests/bench/plot.py RESULTS.json OUT.png
"""
import json
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402 (the backend is chosen first)

from benchlib import cpu_splits  # noqa: E402 (beside this script)

COLORS = {'a': '#9e9e9e', 'b': '#1f77b4', 'c': '#aec7e8', 'd': '#2ca02c', 'e': '#98df8a',
          'g': '#8c564b', 'h': '#17becf', 'j': '#d62728'}
ROLES = (('worker', 'payq-worker', '#1f77b4'), ('postgresql', 'PostgreSQL', '#ff7f0e'),
         ('broker', 'Kafka broker', '#2ca02c'), ('producer', 'payq-producer (f)', '#8c564b'),
         ('other', 'other (busy)', '#9467bd'),
         ('idle', 'idle', '#e0e0e0'))


def throughput_bars(r):
    """(label, commands/s, phase letter) for every throughput figure of the run."""
    bars = []
    a = r.get('a_db_ceiling')
    if a:
        for c, v in a['commands_per_s_by_connections'].items():
            bars.append((f'(a) pgbench, {c} conn', v, 'a'))
    if 'b_worker_batch' in r:
        b = r['b_worker_batch']
        bars.append((f"(b) worker, {b['lanes']} lane(s)", b['commands_per_s'], 'b'))
    if 'c_worker_per_message' in r:
        bars.append(('(c) per message', r['c_worker_per_message']['commands_per_s'], 'c'))
    if 'd_replay' in r:
        bars.append(('(d) replay', r['d_replay']['commands_per_s'], 'd'))
    for w, v in r.get('e_scale', {}).get('commands_per_s', {}).items():
        bars.append((f'(e) {w} worker(s)', v, 'e'))
    for ln, run in r.get('h_lanes', {}).get('runs', {}).items():
        bars.append((f'(h) {ln} lane(s)', run['commands_per_s'], 'h'))
    j = r.get('j_peer', {})
    if 'per_command' in j:
        bars.append(('(j) peer, per command', j['per_command']['commands_per_s'], 'j'))
    if 'per_poll' in j:
        bars.append(('(j) peer, per poll', j['per_poll']['commands_per_s'], 'j'))
    g = r.get('g_gateway')
    if g:
        bars.append((f"(g) gateway, {g['concurrent']['gateway_concurrency']} at once",
                     g['concurrent']['commands_per_s'], 'g'))
        bars.append(("(g') gateway, 1 at a time", g['sequential']['commands_per_s'], 'g'))
    return [x for x in bars if x[1]]


def draw_throughput(ax, r):
    bars = throughput_bars(r)
    if not bars:
        ax.set_axis_off()
        return
    y = range(len(bars))
    ax.barh(list(y), [v for _, v, _ in bars], color=[COLORS[p] for _, _, p in bars])
    ax.set_yticks(list(y), [name for name, _, _ in bars])
    ax.invert_yaxis()
    ax.set_xscale('log')
    ax.set_xlabel('commands/s (log scale)')
    ax.set_title('Throughput by phase')
    for i, (_, v, _) in enumerate(bars):
        ax.text(v, i, f' {v:,.0f}', va='center', fontsize=8)
    ax.set_xlim(right=max(v for _, v, _ in bars) * 4)


def draw_latency(ax, r):
    steps = r.get('f_latency', {}).get('steps', [])
    if not steps:
        ax.set_axis_off()
        return
    floor = 1e-4
    for s in steps:
        b = s['buckets']
        total = b[-1][1] if b else 0
        if total <= 0:
            continue
        xs, ys = [], []
        for le, cum in b:
            if le == '+Inf':
                continue
            xs.append(le * 1000.0)
            ys.append(max(floor, 1.0 - cum / total))
        ax.step(xs, ys, where='post', marker='.',
                label=f"{s['percent_of_b']}% of (b), {s['achieved_rate']:,.0f}/s: p50 "
                      f"{s['latency_p50_ms']:.0f}, p99 {s['latency_p99_ms']:.0f}, "
                      f"p999 {s['latency_p999_ms']:.0f} ms")
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_ylim(floor, 1.5)
    ax.set_xlim(left=1.0)
    # Where a curve crosses these lines is that quantile.
    for q, name in ((0.5, 'p50'), (0.01, 'p99'), (0.001, 'p999')):
        ax.axhline(q, color='grey', lw=0.6, ls=':')
        ax.text(1.1, q, name, fontsize=7, va='bottom')
    ax.axvline(100, color='red', lw=0.6, ls='--')
    ax.set_xlabel('Kafka message timestamp to COMMIT, ms (log; dashed: the 100 ms target)')
    ax.set_ylabel('fraction of commands slower')
    ax.set_title(f"(f) latency live, {r['f_latency']['lanes']} lane(s)")
    ax.legend(fontsize=7, loc='lower left')


def draw_cpu(ax, r):
    splits = cpu_splits(r, short=True)
    if not splits:
        ax.set_axis_off()
        return
    y = list(range(len(splits)))
    left = [0.0] * len(splits)
    for key, name, color in ROLES:
        vals = [s['cores'].get(key) or 0.0 for _, s in splits]
        ax.barh(y, vals, left=left, color=color, label=name)
        left = [a + v for a, v in zip(left, vals)]
    ax.set_yticks(y, [label for label, _ in splits])
    ax.invert_yaxis()
    ax.set_xlim(0, max(max(left), splits[0][1]['cpus']))
    ax.set_xlabel(f"cores busy on average ({splits[0][1]['cpus']} in all)")
    ax.set_title('(i) CPU split over each drain and live step')
    ax.legend(fontsize=7, loc='lower right')


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        r = json.load(f)
    fig = plt.figure(figsize=(13, 10), constrained_layout=True)
    grid = fig.add_gridspec(2, 2, height_ratios=[1.1, 1])
    draw_throughput(fig.add_subplot(grid[0, :]), r)
    draw_latency(fig.add_subplot(grid[1, 0]), r)
    draw_cpu(fig.add_subplot(grid[1, 1]), r)
    lanes = r['lanes']
    fig.suptitle(f"payq benchmark, profile {r['profile']}, {r['machine']['cpus']} CPUs, load "
                 f"{r['machine']['loadavg_1m_at_start']} at start, PAYQ_APPLY_LANES="
                 f"{lanes['used']}" + ('' if lanes['supported'] else ' (ignored by this worker)'))
    fig.savefig(sys.argv[2], dpi=90)


if __name__ == '__main__':
    main()
