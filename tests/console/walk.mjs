// walk.mjs - payq-console in a real browser: Debian's chromium driven by playwright-core.
// Reads CONSOLE_URL (ttl 300 s), CONSOLE_STALE_URL (ttl 1 s), SHOT_DIR, SEED_DB and the
// three tokens from the environment; prints one "ok" line per check and exits 1 on the
// first failure. console.sh seeds the data and checks the database afterwards.
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const URL = process.env.CONSOLE_URL;
const STALE_URL = process.env.CONSOLE_STALE_URL;
const SHOTS = process.env.SHOT_DIR;
const TOKENS = { viewer: process.env.VIEWER_TOKEN, operator: process.env.OPERATOR_TOKEN, admin: process.env.ADMIN_TOKEN };
let passed = 0;

function ok(what) { passed++; console.log('ok   console: ' + what); }
function fail(what) { console.log('FAIL console: ' + what); process.exit(1); }
function expect(cond, what) { if (!cond) fail(what); ok(what); }
function sql(q) { return execFileSync('psql', [process.env.SEED_DB, '-XAtq', '-c', q], { encoding: 'utf8' }).trim(); }

async function poll(fn, what, seconds = 60) {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    if (await fn()) return ok(what);
    if (Date.now() > end) fail(what + ' (timed out)');
    await new Promise(r => setTimeout(r, 300));
  }
}

// Server checks with bearer tokens: no browser, so nothing the page hides matters.
async function bearer(role, path, body) {
  const res = await fetch((role === 'stale' ? STALE_URL : URL) + path, {
    method: body ? 'POST' : 'GET',
    headers: { Authorization: 'Bearer ' + TOKENS[role === 'stale' ? 'operator' : role], 'Content-Type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, data: await res.json().catch(() => ({})) };
}

async function login(ctx, role) {
  const page = await ctx.newPage();
  await page.goto(URL + '/dlq');
  await page.fill('#token', TOKENS[role]);
  await page.click('#login');
  await page.waitForSelector('body[data-ready="1"]', { timeout: 60000 });
  return page;
}

async function visit(page, path, shot) {
  await page.goto(URL + path);
  await page.waitForSelector('body[data-ready="1"]', { timeout: 60000 });
  if (shot) await page.screenshot({ path: join(SHOTS, shot + '.png'), fullPage: true });
  return page.textContent('main');
}

// From inside the page: the session cookie goes along; the CSRF header is ours to set.
async function pagePost(page, path, body, csrf) {
  return page.evaluate(async ([p, b, c]) => {
    const h = { 'Content-Type': 'application/json' };
    if (c !== null) h['X-CSRF-Token'] = c;
    const r = await fetch(p, { method: 'POST', headers: h, body: JSON.stringify(b) });
    return r.status;
  }, [path, body, csrf]);
}

async function planAndRun(page, buttonSel, confirm, reason) {
  await page.click(buttonSel);
  await page.waitForSelector('#plan-count', { timeout: 60000 });
  const count = await page.textContent('#plan-count');
  if (confirm) await page.fill('#confirm', count);
  if (reason) await page.fill('#reason', reason);
  await page.click('#execute');
  await page.waitForSelector('#outcome', { timeout: 120000 });
  return { count, outcome: await page.textContent('#outcome') };
}

const profile = mkdtempSync(join(tmpdir(), 'payq-chromium-'));
const newCtx = async (name) => chromium.launchPersistentContext(join(profile, name), {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 800 },
});

try {
  // 1. A viewer walks every page; nothing to act with is shown, payloads are redacted.
  const vctx = await newCtx('viewer');
  const v = await login(vctx, 'viewer');
  const dlq = await visit(v, '/dlq', 'dlq-viewer');
  expect(/not_json/.test(dlq) && /unsupported_version/.test(dlq), 'dead letters grouped by reason');
  expect(await v.locator('button[data-role]').count() === 0, 'a viewer is shown no action button');
  const pay = await visit(v, '/payments', 'payments');
  expect(pay.includes('ord-unknown-1') && pay.includes('key-unknown-1'), 'pending and unknown payments with their keys');
  const tl = await visit(v, '/order?id=ord-timeline', 'order-timeline');
  expect(/commands\/3\/0/.test(tl) && tl.includes('key_reuse') && tl.includes('key-timeline'), 'the order timeline: records, anomalies, payments');
  const an = await visit(v, '/anomalies', 'anomalies');
  expect(an.includes('unresolved_payment') && an.includes('key_reuse'), 'anomalies by kind');
  await visit(v, '/audit', 'audit');
  const lag = await visit(v, '/lag', 'lag');
  expect(/Lag per partition/.test(lag) && /members/.test(lag), 'lag per partition and group liveness');
  await visit(v, '/actions', 'actions-empty');
  ok('screenshots of every page in ' + SHOTS);

  // 2. The role matrix, against the server.
  const vcsrf = await v.evaluate(async () => (await (await fetch('/api/me')).json()).csrf);
  expect(await pagePost(v, '/api/plan', { action: 'dlq-redrive', params: { reason: 'not_json' } }, vcsrf) === 403,
    "a viewer's POST (with a valid CSRF token) gets 403");
  const matrix = [
    ['viewer', 'dlq-redrive', { reason: 'not_json' }, 403],
    ['viewer', 'anomaly-ack', { kind: 'key_reuse' }, 403],
    ['operator', 'resolve', { order: 'ord-unknown-2', command: 'pay-2', how: 'failed' }, 403],
    ['operator', 'dlq-redrive', { reason: 'unsupported_version' }, 200],
    ['admin', 'resolve', { order: 'ord-unknown-2', command: 'pay-2', how: 'failed' }, 200],
  ];
  for (const [role, action, params, want] of matrix) {
    const r = await bearer(role, '/api/plan', { action, params });
    expect(r.status === want, `${role} plans ${action}: HTTP ${r.status}, expected ${want}`);
  }
  expect(!dlq.includes('4111111111111111'), 'a viewer sees the payload redacted');
  const auditPlan = await bearer('operator', '/api/plan', { action: 'audit-repair', params: {} });
  const auditExec = await bearer('operator', '/api/execute', { plan_id: auditPlan.data.plan_id, hash: auditPlan.data.hash, confirm: String(auditPlan.data.count) });
  expect(auditExec.status === 403, 'an operator may not execute an audit repair (403)');

  // 3. CSRF: the operator's session cookie alone is not enough.
  const octx = await newCtx('operator');
  const o = await login(octx, 'operator');
  expect(await pagePost(o, '/api/plan', { action: 'anomaly-ack', params: { kind: 'key_reuse' } }, null) === 403, 'a POST without a CSRF token gets 403');
  expect(await pagePost(o, '/api/plan', { action: 'anomaly-ack', params: { kind: 'key_reuse' } }, 'f'.repeat(64)) === 403, 'a POST with a wrong CSRF token gets 403');

  // 4. Re-drive: dry run, typed confirmation, execute, once.
  await visit(o, '/dlq');
  await o.click('#redrive-not_json');
  await o.waitForSelector('#plan-count');
  expect(await o.textContent('#plan-count') === '3', 'the re-drive plan names the 3 not_json dead letters');
  await o.screenshot({ path: join(SHOTS, 'dlq-plan.png'), fullPage: true });
  await o.click('#execute');
  await o.waitForSelector('#outcome');
  expect(/type the number/.test(await o.textContent('#outcome')), 'execute without the typed count is refused');
  await o.fill('#confirm', '3');
  await o.click('#execute');
  await o.locator('#outcome', { hasText: 'done' }).waitFor({ timeout: 120000 });
  ok('the re-drive ran after the count was typed');
  await o.screenshot({ path: join(SHOTS, 'dlq-executed.png'), fullPage: true });
  await o.click('#execute');
  await o.locator('#outcome', { hasText: 'already executed' }).waitFor({ timeout: 60000 });
  ok('a double submit does nothing the second time');
  const planId = await o.evaluate(() => document.getElementById('plan').dataset.planId);
  expect(sql(`SELECT count(*) FROM payq.operator_actions WHERE plan_id = '${planId}' AND phase = 'result' AND ok AND actor = 'otto' AND action = 'dlq-redrive' AND target_count = 3`) === '1',
    'one result row in payq.operator_actions for the re-drive');
  const log = await visit(o, '/actions', 'actions');
  expect(log.includes('dlq-redrive') && log.includes('otto'), 'the action log page shows the re-drive');

  // 5. A plan whose targets changed is refused.
  const ack = await bearer('operator', '/api/plan', { action: 'anomaly-ack', params: { kind: 'unresolved_payment' } });
  expect(ack.status === 200 && ack.data.count === 2, 'the acknowledge plan names 2 anomalies');
  sql("INSERT INTO payq.anomalies (kind, order_id, detail) VALUES ('unresolved_payment', 'ord-late', 'arrived after the dry run')");
  const changed = await bearer('operator', '/api/execute', { plan_id: ack.data.plan_id, hash: ack.data.hash, confirm: '2' });
  expect(changed.status === 409 && /changed/.test(changed.data.error), 'a plan whose targets changed is refused (409)');

  const ack2 = await bearer('operator', '/api/plan', { action: 'anomaly-ack', params: { kind: 'unresolved_payment' } });
  const acked = await bearer('operator', '/api/execute', { plan_id: ack2.data.plan_id, hash: ack2.data.hash, confirm: String(ack2.data.count) });
  expect(ack2.data.count === 3 && acked.status === 200, 'a new plan with the 3 anomalies is acknowledged');
  await visit(o, '/anomalies', 'anomalies-acknowledged');
  const anj = (await bearer('viewer', '/api/anomalies')).data;
  expect(anj.filter(r => r.kind === 'unresolved_payment').reduce((t, r) => t + r.acknowledged, 0) === 3 && sql("SELECT count(*) FROM payq.operator_actions WHERE action = 'anomaly-ack' AND phase = 'result' AND ok") === '1',
    'the anomalies page counts them acknowledged');

  // A bulk re-drive never picks up dead letters that arrived after the dry run.
  const rd = await bearer('operator', '/api/plan', { action: 'dlq-redrive', params: { reason: 'unsupported_version' } });
  execFileSync('kcat', ['-b', process.env.SEED_BROKERS, '-P', '-t', process.env.SEED_DLQ, '-p', '1',
    '-H', 'payq-dlq-reason=unsupported_version', '-H', 'payq-dlq-topic=' + process.env.SEED_TOPIC],
    { input: '{"v":9,"late":true}' });
  const rdx = await bearer('operator', '/api/execute', { plan_id: rd.data.plan_id, hash: rd.data.hash, confirm: '1' });
  expect(rd.data.count === 1 && rdx.status === 409 && /changed/.test(rdx.data.error),
    'a re-drive whose dead letters changed after the dry run is refused (409)');

  // 6. A stale plan is refused (the second console keeps plans 1 s).
  const st = await bearer('stale', '/api/plan', { action: 'anomaly-ack', params: { kind: 'key_reuse' } });
  await new Promise(r => setTimeout(r, 2500));
  const stale = await bearer('stale', '/api/execute', { plan_id: st.data.plan_id, hash: st.data.hash });
  expect(stale.status === 409 && /stale/.test(stale.data.error), 'a stale plan is refused (409)');

  // 7. Reconcile now settles a payment against the sandbox gateway.
  await visit(o, '/payments');
  const rec = await planAndRun(o, '#reconcile-ord-unknown-1', false, '');
  expect(rec.count === '1' && /done/.test(rec.outcome), 'reconcile now ran on one payment');
  await poll(() => sql("SELECT status FROM payq.payments WHERE order_id = 'ord-unknown-1'") === 'succeeded',
    'the reconciler settled ord-unknown-1 as succeeded through the sandbox gateway');

  // 8. An admin: unredacted payloads, a manual resolution with a reason, the audit repair.
  const actx = await newCtx('admin');
  const a = await login(actx, 'admin');
  expect((await visit(a, '/dlq', 'dlq-admin')).includes('4111111111111111'), 'an admin sees the payload unredacted');
  await visit(a, '/payments');
  const res = await planAndRun(a, '#fail-ord-unknown-2', true, 'looked it up at the channel: no charge');
  expect(/done/.test(res.outcome), 'an admin resolved ord-unknown-2 by hand');
  expect(sql("SELECT status FROM payq.payments WHERE order_id = 'ord-unknown-2'") === 'failed', 'ord-unknown-2 is failed');
  expect(sql("SELECT reason FROM payq.operator_actions WHERE action = 'resolve' AND phase = 'result'") === 'looked it up at the channel: no charge', 'the resolution row keeps its reason');
  await visit(a, '/audit');
  const rep = await planAndRun(a, '#audit-dry-run', true, 'repair the seeded gap');
  expect(rep.count === '1' && /done/.test(rep.outcome), 'the audit repair (dry run 1 gap, then execute) ran');
  await a.screenshot({ path: join(SHOTS, 'audit-repair.png'), fullPage: true });
  await visit(a, '/order?id=ord-unknown-2', 'order-resolved');
  expect(sql("SELECT from_status || '>' || to_status FROM payq.payment_transitions WHERE order_id = 'ord-unknown-2'") === 'unknown>failed',
    'the resolution is a new transition (unknown>failed) in payq.payment_transitions');
  expect(/Payment transitions[\s\S]*unknown[\s\S]*failed/.test(await a.textContent('body')), 'the order timeline shows the transition');
  await visit(a, '/actions', 'actions-final');
  await vctx.close(); await octx.close(); await actx.close();
} catch (e) {
  fail(String(e && e.stack || e));
} finally {
  rmSync(profile, { recursive: true, force: true });
}
console.log(`${passed} passed, 0 failed`);
