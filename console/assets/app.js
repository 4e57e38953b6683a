// payq console: each page fetches its JSON from /api and draws it with DOM calls only
// (textContent, never innerHTML), so no payload can become markup.
'use strict';

const RANK = { none: 0, viewer: 1, operator: 2, admin: 3 };
let me = null;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'onclick') e.addEventListener('click', v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : String(k ?? ''));
  return e;
}

// The page hides what a role may not do; the server refuses it anyway.
function may(role) { return me && RANK[me.role] >= RANK[role]; }

async function api(path, body) {
  const opt = body === undefined ? {} : {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': me ? me.csrf : '' },
    body: JSON.stringify(body),
  };
  const res = await fetch(path, opt);
  let data = {};
  try { data = await res.json(); } catch (e) { data = { error: 'HTTP ' + res.status }; }
  return { status: res.status, data };
}

function table(rows, cols, extra) {
  const t = el('table', {}, el('tr', {}, ...cols.map(c => el('th', {}, c)), ...(extra ? [el('th', {}, '')] : [])));
  for (const r of rows) {
    const tr = el('tr', {}, ...cols.map(c => el('td', {}, typeof r[c] === 'object' && r[c] !== null ? JSON.stringify(r[c]) : r[c])));
    if (extra) tr.append(el('td', {}, ...extra(r)));
    t.append(tr);
  }
  return t;
}

function iso(ms) { return ms ? new Date(ms).toISOString() : ''; }

function show(...nodes) {
  const m = document.getElementById('main');
  m.replaceChildren(...nodes);
}

function error(msg) { return el('p', { class: 'error', id: 'error' }, msg); }

// ---- plans: dry run, then confirm, then execute ----
async function plan(action, params) {
  const box = document.getElementById('plan');
  const { status, data } = await api('/api/plan', { action, params });
  box.hidden = false;
  if (status !== 200) { box.replaceChildren(error(data.error || 'HTTP ' + status)); return; }
  const confirm = el('input', { id: 'confirm', placeholder: 'type ' + data.count + ' to confirm' });
  const reason = el('input', { id: 'reason', placeholder: 'reason', size: 40 });
  const result = el('div', { id: 'result' });
  const run = async () => {
    const r = await api('/api/execute', { plan_id: data.plan_id, hash: data.hash, confirm: confirm.value, reason: reason.value });
    result.replaceChildren(
      el('p', { class: r.status === 200 ? 'ok' : 'error', id: 'outcome' }, r.status === 200 ? 'done' : (r.data.error || (r.data.already_executed ? 'already executed: nothing done' : 'failed')) + ' (HTTP ' + r.status + ')'),
      el('pre', {}, r.data.result || ''));
  };
  box.replaceChildren(
    el('h3', {}, 'Plan: ' + action),
    el('p', {}, 'Targets: ', el('strong', { id: 'plan-count' }, data.count), ' · hash ', el('code', { id: 'plan-hash' }, data.hash), ' · expires in ' + data.expires_in_s + ' s'),
    el('pre', { id: 'plan-targets' }, data.targets.join('\n')),
    data.confirm_count ? confirm : '', ' ', reason, ' ',
    el('button', { id: 'execute', onclick: run }, 'Execute'),
    el('button', { onclick: () => { box.hidden = true; } }, 'Cancel'),
    result);
  box.dataset.planId = data.plan_id;
  box.dataset.hash = data.hash;
}

function actionButton(role, label, action, params, id) {
  if (!may(role)) return '';
  return el('button', { 'data-role': role, id: id || '', onclick: () => plan(action, params) }, label);
}

// ---- pages ----
const pages = {
  async dlq() {
    const { status, data } = await api('/api/dlq');
    if (status !== 200) return show(error(data.error));
    const rows = Object.entries(data.groups).map(([reason, g]) => ({
      reason, count: g.count, first_seen: iso(g.first_ms), last_seen: iso(g.last_ms), preview: g.preview,
      sources: g.records.slice(0, 5).map(r => r.source_topic + '/' + r.source_partition + '/' + r.source_offset + ' (dlq ' + r.dlq + ')').join('\n'),
    }));
    show(el('h2', {}, 'Dead letters in ' + data.topic + ' by reason'),
      el('p', {}, data.redacted ? 'Payloads redacted (admins see them).' : 'Payloads unredacted.', data.truncated ? ' Scan stopped at 20,000 records.' : ''),
      table(rows, ['reason', 'count', 'first_seen', 'last_seen', 'preview', 'sources'],
        r => [actionButton('operator', 'Re-drive', 'dlq-redrive', { reason: r.reason }, 'redrive-' + r.reason)]));
  },
  async payments() {
    const { status, data } = await api('/api/payments');
    if (status !== 200) return show(error(data.error));
    show(el('h2', {}, 'Pending and unknown payments'),
      table(data, ['order_id', 'command_id', 'status', 'age_s', 'idempotency_key', 'attempts', 'last_answer', 'amount_minor', 'currency'],
        r => [actionButton('operator', 'Reconcile now', 'reconcile-now', { order: r.order_id, command: r.command_id }, 'reconcile-' + r.order_id),
              actionButton('admin', 'Mark failed', 'resolve', { order: r.order_id, command: r.command_id, how: 'failed' }, 'fail-' + r.order_id)]));
  },
  async order() {
    const id = new URLSearchParams(location.search).get('id') || '';
    const form = el('form', { method: 'get', action: '/order' }, 'Order ID ', el('input', { name: 'id', value: id }), el('button', {}, 'Show'));
    if (!id) return show(el('h2', {}, 'One order'), form);
    const { status, data } = await api('/api/order?id=' + encodeURIComponent(id));
    if (status !== 200) return show(form, error(data.error));
    const kafka = data.commands.filter(c => c.kafka_topic).map(c => ({ command_id: c.command_id, record: c.kafka_topic + '/' + c.kafka_partition + '/' + c.kafka_offset, outcome: c.outcome }));
    show(el('h2', {}, 'Order ' + id), form,
      el('h3', {}, 'Order row'), table(data.order, ['status', 'amount_minor', 'currency', 'version', 'paid_command_id', 'created_at', 'updated_at']),
      el('h3', {}, 'Kafka records'), table(kafka, ['command_id', 'record', 'outcome']),
      el('h3', {}, 'processed_commands'), table(data.commands, ['command_id', 'command_type', 'outcome', 'detail', 'duplicates', 'first_seen_at', 'last_seen_at']),
      el('h3', {}, 'Payments'), table(data.payments, ['payment_id', 'command_id', 'status', 'attempts', 'idempotency_key', 'gateway_charge_id', 'decline_code', 'updated_at']),
      el('h3', {}, 'Payment transitions'), table(data.transitions, ['payment_id', 'from_status', 'to_status', 'by_role', 'by_program', 'at']),
      el('h3', {}, 'Anomalies'), table(data.anomalies, ['id', 'kind', 'command_id', 'detail', 'at']),
      el('h3', {}, 'DLQ copies'),
      el('p', { id: 'dlq-note' }, 'Dead letters carry no row in PostgreSQL and a topic is never scanned for one order: find them on the Dead letters page by reason and source coordinates; a re-drive of this order shows under Operator actions.'),
      el('h3', {}, 'Operator actions'), table(data.actions, ['id', 'at', 'actor', 'action', 'phase', 'reason', 'ok']));
  },
  async anomalies() {
    const { status, data } = await api('/api/anomalies');
    if (status !== 200) return show(error(data.error));
    const kinds = [...new Set(data.map(r => r.kind))];
    show(el('h2', {}, 'Anomalies by kind and hour (14 days)'),
      el('p', {}, ...kinds.map(k => actionButton('operator', 'Acknowledge ' + k, 'anomaly-ack', { kind: k }, 'ack-' + k))),
      table(data, ['hour', 'kind', 'n', 'acknowledged', 'first_id', 'last_id']));
  },
  async audit() {
    show(el('h2', {}, 'Audit gaps and repair'),
      el('p', {}, 'A dry run of payq-replay audit --repair lists the gaps; executing it republishes exactly their records (admins).'),
      actionButton('operator', 'Audit (dry run of the repair)', 'audit-repair', {}, 'audit-dry-run'));
  },
  async lag() {
    const { status, data } = await api('/api/lag');
    if (status !== 200) return show(error(data.error));
    show(el('h2', {}, 'Group ' + data.group + ' on ' + data.topic),
      el('p', { id: 'liveness' }, 'State ' + data.state + ', ' + data.members + ' members ' + data.member_detail),
      el('h3', {}, 'Lag per partition (Kafka)'), table(data.partitions, ['partition', 'high', 'committed', 'lag']),
      el('h3', {}, 'consumer_progress'), table(data.progress, ['topic', 'partition', 'next_offset', 'updated_at', 'idle_s']));
  },
  async actions() {
    const { status, data } = await api('/api/actions');
    if (status !== 200) return show(error(data.error));
    show(el('h2', {}, 'Operator action log'),
      table(data, ['id', 'at', 'actor', 'role', 'action', 'phase', 'target_count', 'plan_hash', 'reason', 'ok', 'result']));
  },
};

function login() {
  const tok = el('input', { id: 'token', type: 'password', size: 40 });
  const msg = el('p', {});
  show(el('h2', {}, 'Log in'), tok, ' ', el('button', { id: 'login', onclick: async () => {
    const res = await fetch('/login', { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'token=' + encodeURIComponent(tok.value) });
    if (res.status === 200) location.reload(); else msg.replaceChildren(error('unknown token'));
  } }, 'Log in'), msg);
}

async function start() {
  const r = await api('/api/me');
  if (r.status === 401) return login();
  me = r.data;
  document.getElementById('who').textContent = me.user + ' (' + me.role + ')';
  document.body.dataset.role = me.role;
  let page = location.pathname.replace(/^\//, '') || 'dlq';
  if (!pages[page]) page = 'dlq';
  for (const a of document.querySelectorAll('nav a'))
    if (a.getAttribute('href') === '/' + page) a.classList.add('current');
  await pages[page]();
  document.body.dataset.ready = '1';
}

start();
