#!/usr/bin/env python3
"""Offline checks of payq's deployment files, for the tests in tests/deploy.

Subcommands:
  k8s-validate   Kubernetes JSON schemas (kubernetes-validate, strict) for built-in kinds; for
                 KEDA and Prometheus Operator kinds a strict field schema of ours
                 (schemas/*.json) and the CRD validators of the npm @kubernetes-models packages
  k8s-policy     cross-object rules: env vars the worker knows, probes on its port, grace
                 period above the shutdown timeout, KEDA reading the worker's own variables...
  compose        the compose-spec JSON schema, then the stack's own rules
  dockerfile     the Dockerfile against the build: packages, user, entrypoint, .dockerignore
  rules          PrometheusRule spec -> a Prometheus rules file; runbook anchors in the README
  alert-metrics  every metric an alert names is exported by the worker (a live scrape) or
                 allowlisted
  worker-env     the worker's environment and argv as the Deployment defines them
"""

import argparse
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))

failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL {msg}")


def ok(msg):
    print(f"ok   {msg}")


def finish():
    if failures:
        print(f"{len(failures)} problem(s)")
        sys.exit(1)


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def kn(doc):
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def settings_from_help(path):
    """PAYQ_* variable -> default (or None) from a program's --help output."""
    out = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"\s+--\S+\s+(PAYQ_[A-Z0-9_]+)\s+(.*)$", line)
            if m:
                d = re.search(r"\(default: (.*)\)\s*$", m.group(2))
                out[m.group(1)] = d.group(1) if d else None
    if not out:
        sys.exit(f"no PAYQ_* settings found in {path}")
    return out


# ---------------------------------------------------------------- kubernetes schemas

CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.json",
}


def cmd_k8s_validate(a):
    import kubernetes_validate.utils as kv

    crds = []
    for path in a.files:
        docs = load_docs(path)
        if not docs:
            fail(f"{path}: no resources")
        for doc in docs:
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key in CRD_SCHEMAS:
                with open(os.path.join(HERE, "schemas", CRD_SCHEMAS[key])) as f:
                    schema = json.load(f)
                errs = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
                for e in errs:
                    where = ".".join(str(p) for p in e.absolute_path)
                    fail(f"{path}: {kn(doc)}: {where}: {e.message}")
                if not errs:
                    ok(f"{path}: {kn(doc)} matches the strict field schema {CRD_SCHEMAS[key]}")
                crds.append(doc)
                continue
            for version in a.versions:
                try:
                    got = kv.validate(doc, version, strict=True)
                    ok(f"{path}: {kn(doc)} valid for Kubernetes {got} (strict)")
                except kv.ValidationError as e:
                    where = ".".join(str(p) for p in e.path)
                    fail(f"{path}: {kn(doc)}: Kubernetes {e.version}: {where}: {e.message}")
                except kv.SchemaNotFoundError as e:
                    fail(f"{path}: {kn(doc)}: {e.message} (and no CRD schema here)")
    if crds:
        if not a.npm:
            fail("CRD objects present but no --npm folder for their validators")
        else:
            r = subprocess.run(["node", os.path.join(HERE, "crdcheck.mjs"), a.npm],
                               input=json.dumps(crds), text=True, capture_output=True)
            for line in r.stdout.splitlines():
                (fail if line.startswith("ERROR") else print)(
                    line if not line.startswith("ERROR") else line[6:])
            if r.returncode and not r.stdout:
                fail(f"crdcheck.mjs failed: {r.stderr.strip()}")
            elif r.stderr.strip():
                print(r.stderr.strip())
    finish()


# ---------------------------------------------------------------- kubernetes policy

def by_kind(docs, kind, name=None):
    found = [d for d in docs if d.get("kind") == kind and
             (name is None or d["metadata"]["name"] == name)]
    return found


def one(docs, kind, name=None):
    found = by_kind(docs, kind, name)
    if len(found) != 1:
        sys.exit(f"expected one {kind}{' ' + name if name else ''}, found {len(found)}")
    return found[0]


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def container_env(docs, pod_spec, container):
    """name -> ('value', v) | ('configmap', name, key, v) | ('secret', name, key) |
    ('field', path): what Kubernetes would give the container."""
    env = {}
    for src in container.get("envFrom", []):
        if "configMapRef" in src:
            cm = one(docs, "ConfigMap", src["configMapRef"]["name"])
            for k, v in cm.get("data", {}).items():
                env[src.get("prefix", "") + k] = ("configmap", cm["metadata"]["name"], k, v)
        elif "secretRef" in src:
            env.setdefault("__secretRefs", []).append(src["secretRef"]["name"])
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = ("value", e["value"])
        elif "valueFrom" in e:
            vf = e["valueFrom"]
            if "configMapKeyRef" in vf:
                r = vf["configMapKeyRef"]
                cm = one(docs, "ConfigMap", r["name"])
                env[e["name"]] = ("configmap", r["name"], r["key"], cm["data"][r["key"]])
            elif "secretKeyRef" in vf:
                env[e["name"]] = ("secret", vf["secretKeyRef"]["name"], vf["secretKeyRef"]["key"])
            elif "fieldRef" in vf:
                env[e["name"]] = ("field", vf["fieldRef"]["fieldPath"])
            else:
                env[e["name"]] = ("other", json.dumps(vf))
        else:
            env[e["name"]] = ("value", "")
    return env


def env_value(entry):
    if entry[0] == "value":
        return entry[1]
    if entry[0] == "configmap":
        return entry[3]
    return None


def probe_port(container, probe):
    port = probe.get("httpGet", {}).get("port")
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def dockerfile_info(path):
    info = {"user": None, "entrypoint": None, "cmd": None, "stopsignal": None, "from": [],
            "stages": []}
    text = open(path).read().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        rest = rest.strip()
        if word == "FROM":
            info["from"].append(rest)
            info["stages"].append({"from": rest, "runs": []})
        elif word == "RUN" and info["stages"]:
            info["stages"][-1]["runs"].append(rest)
        elif word == "USER":
            info["user"] = rest
        elif word in ("ENTRYPOINT", "CMD"):
            info[word.lower()] = json.loads(rest) if rest.startswith("[") else ["/bin/sh", "-c", rest]
        elif word == "STOPSIGNAL":
            info["stopsignal"] = rest
    return info


def check_pod_security(where, pod_spec, container, uid):
    m = mark()
    psc = pod_spec.get("securityContext", {})
    csc = container.get("securityContext", {})
    if not (csc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
        fail(f"{where}: runAsNonRoot is not set")
    user = csc.get("runAsUser", psc.get("runAsUser"))
    if user is not None and (user == 0 or (uid is not None and user != uid)):
        fail(f"{where}: runAsUser {user} (the image's user is {uid})")
    if csc.get("readOnlyRootFilesystem") is not True:
        fail(f"{where}: readOnlyRootFilesystem is not true")
    if csc.get("allowPrivilegeEscalation") is not False:
        fail(f"{where}: allowPrivilegeEscalation is not false")
    if "ALL" not in csc.get("capabilities", {}).get("drop", []):
        fail(f"{where}: capabilities.drop lacks ALL")
    if csc.get("privileged"):
        fail(f"{where}: privileged")
    res = container.get("resources", {})
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in res.get(kind, {}):
                fail(f"{where}: resources.{kind}.{r} is not set")
    if clean(m):
        ok(f"{where}: non-root (uid {user}), read-only root, no privilege escalation, "
           f"capabilities dropped, requests and limits set")


def mark():
    """Failure count now; clean(m) is true when nothing failed since."""
    return len(failures)


def clean(m):
    return len(failures) == m


def cmd_k8s_policy(a):
    docs = load_docs(a.rendered)
    settings = settings_from_help(a.worker_help)
    dinfo = dockerfile_info(a.dockerfile)
    uid = None
    if dinfo["user"]:
        u = dinfo["user"].split(":")[0]
        uid = int(u) if u.isdigit() else None
    name = a.rendered

    dep = one(docs, "Deployment", "payq-worker")
    pod = dep["spec"]["template"]["spec"]
    pod_labels = dep["spec"]["template"]["metadata"].get("labels", {})
    workers = [c for c in pod["containers"] if c["name"] == "worker"]
    if len(workers) != 1:
        sys.exit("the Deployment has no container named worker")
    c = workers[0]
    env = container_env(docs, pod, c)

    # Environment: only variables the worker knows; the ones that matter are set.
    payq_vars = sorted(k for k in env if k.startswith("PAYQ_"))
    unknown = [k for k in payq_vars if k not in settings]
    if unknown:
        fail(f"{name}: worker env sets variables payq-worker does not know: {unknown}")
    else:
        ok(f"{name}: all {len(payq_vars)} PAYQ_* variables of the worker are payq-worker settings")
    not_set = sorted(set(settings) - set(payq_vars))
    if not_set:
        print(f"info {name}: settings left at their defaults: {not_set}")
    for required in ("PAYQ_BROKERS", "PAYQ_TOPIC", "PAYQ_DLQ_TOPIC", "PAYQ_GROUP", "PAYQ_DB",
                     "PAYQ_INSTANCE_ID", "PAYQ_HTTP_ADDR", "PAYQ_SHUTDOWN_TIMEOUT_MS"):
        if required not in env:
            fail(f"{name}: worker env does not set {required}")
    if env.get("PAYQ_INSTANCE_ID") != ("field", "metadata.name"):
        fail(f"{name}: PAYQ_INSTANCE_ID must come from the downward API metadata.name, "
             f"got {env.get('PAYQ_INSTANCE_ID')}")
    else:
        ok(f"{name}: PAYQ_INSTANCE_ID is the pod name (downward API)")
    db = env.get("PAYQ_DB", ("none",))
    if db[0] != "secret":
        fail(f"{name}: PAYQ_DB must come from a Secret, got {db[0]}")
    else:
        ok(f"{name}: PAYQ_DB comes from Secret {db[1]} key {db[2]}")
    for k, v in env.items():
        if k.startswith("PAYQ_") and v[0] == "value" and k != "PAYQ_DB":
            print(f"info {name}: {k} set inline in the Deployment, not in the ConfigMap")

    # Image, entrypoint and arguments.
    image = c["image"]
    if a.expect_tag and not image.endswith(":" + a.expect_tag):
        fail(f"{name}: worker image {image} is not tagged {a.expect_tag} (the project version)")
    if c.get("command"):
        fail(f"{name}: the worker overrides the image ENTRYPOINT ({c['command']})")
    if c.get("args", ["run"])[:1] != ["run"]:
        fail(f"{name}: worker args {c.get('args')} do not start with run")
    if dinfo["entrypoint"] != ["payq-worker"]:
        fail(f"{a.dockerfile}: ENTRYPOINT is {dinfo['entrypoint']}, the manifests assume payq-worker")

    # Shutdown: the grace period covers PAYQ_SHUTDOWN_TIMEOUT_MS with a margin.
    timeout_ms = int(env_value(env.get("PAYQ_SHUTDOWN_TIMEOUT_MS", ("value", "")))
                     or settings["PAYQ_SHUTDOWN_TIMEOUT_MS"])
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace * 1000 < timeout_ms + 5000:
        fail(f"{name}: terminationGracePeriodSeconds {grace} is not at least 5 s above "
             f"PAYQ_SHUTDOWN_TIMEOUT_MS {timeout_ms}")
    else:
        ok(f"{name}: terminationGracePeriodSeconds {grace} > PAYQ_SHUTDOWN_TIMEOUT_MS {timeout_ms} ms")

    # Probes on the port the worker listens on.
    http_addr = env_value(env.get("PAYQ_HTTP_ADDR", ("value", settings["PAYQ_HTTP_ADDR"])))
    http_port = int(http_addr.rsplit(":", 1)[1])
    host = http_addr.rsplit(":", 1)[0]
    if host not in ("", "0.0.0.0"):
        fail(f"{name}: PAYQ_HTTP_ADDR {http_addr} does not listen on the pod IP")
    m = mark()
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                        ("startupProbe", "/healthz")):
        p = c.get(probe)
        if not p:
            if probe != "startupProbe":
                fail(f"{name}: worker has no {probe}")
            continue
        if p.get("httpGet", {}).get("path") != path:
            fail(f"{name}: {probe} path is {p.get('httpGet', {}).get('path')}, want {path}")
        if probe_port(c, p) != http_port:
            fail(f"{name}: {probe} port {probe_port(c, p)} is not PAYQ_HTTP_ADDR's {http_port}")
    if clean(m):
        ok(f"{name}: liveness /healthz, readiness /readyz on port {http_port} (PAYQ_HTTP_ADDR)")
    if "replicas" in dep["spec"]:
        fail(f"{name}: the Deployment sets replicas although KEDA owns the count")

    check_pod_security(f"{name}: Deployment/payq-worker", pod, c, uid)

    # Migration Job: same image, migrate, same database Secret.
    m = mark()
    job = one(docs, "Job", "payq-migrate")
    jpod = job["spec"]["template"]["spec"]
    jc = jpod["containers"][0]
    if jc["image"] != image:
        fail(f"{name}: the Job's image {jc['image']} differs from the worker's {image}")
    if jc.get("args") != ["migrate"] or jc.get("command"):
        fail(f"{name}: the Job does not run payq-worker migrate ({jc.get('command')} {jc.get('args')})")
    jenv = container_env(docs, jpod, jc)
    jdb = jenv.get("PAYQ_DB", ("none",))
    if jdb[0] != "secret":
        fail(f"{name}: the Job's PAYQ_DB must come from a Secret, got {jdb[0]}")
    elif db[0] == "secret" and jdb[1] == db[1]:
        fail(f"{name}: the Job and the workers share Secret {db[1]}: the migration (payq_owner) "
             f"and the workers (payq_worker) need their own")
    if jpod.get("restartPolicy") not in ("OnFailure", "Never"):
        fail(f"{name}: the Job's restartPolicy is {jpod.get('restartPolicy')}")
    if clean(m):
        ok(f"{name}: Job payq-migrate runs `payq-worker migrate` on the worker's image, with its "
           f"own Secret {jdb[1]}")
    check_pod_security(f"{name}: Job/payq-migrate", jpod, jc, uid)

    # PodDisruptionBudget, Service and ServiceMonitor select the worker pods.
    pdb = one(docs, "PodDisruptionBudget")
    if not labels_match(pdb["spec"]["selector"].get("matchLabels"), pod_labels):
        fail(f"{name}: the PodDisruptionBudget does not select the worker pods")
    elif not ({"maxUnavailable", "minAvailable"} & set(pdb["spec"])):
        fail(f"{name}: the PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
    else:
        ok(f"{name}: PodDisruptionBudget selects the worker pods")
    m = mark()
    svc = one(docs, "Service")
    if not labels_match(svc["spec"]["selector"], pod_labels):
        fail(f"{name}: the Service does not select the worker pods")
    port_names = {p.get("name") for p in c.get("ports", [])}
    for p in svc["spec"]["ports"]:
        if p.get("targetPort") not in port_names and p.get("targetPort") != http_port:
            fail(f"{name}: Service port {p} targets no worker port")
    sm = one(docs, "ServiceMonitor")
    if not labels_match(sm["spec"]["selector"].get("matchLabels"), svc["metadata"].get("labels", {})):
        fail(f"{name}: the ServiceMonitor does not select the Service")
    svc_ports = {p.get("name") for p in svc["spec"]["ports"]}
    for ep in sm["spec"]["endpoints"]:
        if ep.get("port") not in svc_ports:
            fail(f"{name}: ServiceMonitor endpoint port {ep.get('port')} is not a Service port")
        if ep.get("path", "/metrics") != "/metrics":
            fail(f"{name}: ServiceMonitor scrapes {ep.get('path')}")
    if clean(m):
        ok(f"{name}: Service {svc['metadata']['name']} and its ServiceMonitor scrape /metrics "
           f"of the worker pods")

    # KEDA: the worker's own variables, maxReplicaCount = partitions, persistent lag excluded.
    m = mark()
    so = one(docs, "ScaledObject")
    ref = so["spec"]["scaleTargetRef"]
    if ref.get("kind", "Deployment") != "Deployment" or ref["name"] != dep["metadata"]["name"]:
        fail(f"{name}: ScaledObject targets {ref}, not the worker Deployment")
    if ref.get("envSourceContainerName", pod["containers"][0]["name"]) != "worker":
        fail(f"{name}: ScaledObject reads env from container {ref.get('envSourceContainerName')}")
    if so["spec"].get("maxReplicaCount") != a.partitions:
        fail(f"{name}: maxReplicaCount {so['spec'].get('maxReplicaCount')} is not the partition "
             f"count {a.partitions}")
    kafka = [t for t in so["spec"]["triggers"] if t["type"] == "kafka"]
    if len(kafka) != 1:
        fail(f"{name}: want one kafka trigger, found {len(kafka)}")
    else:
        md = kafka[0]["metadata"]
        for key, var in (("bootstrapServersFromEnv", "PAYQ_BROKERS"),
                         ("consumerGroupFromEnv", "PAYQ_GROUP"), ("topicFromEnv", "PAYQ_TOPIC")):
            if md.get(key) != var:
                fail(f"{name}: kafka trigger {key} is {md.get(key)!r}, want {var}")
            elif var not in env or env_value(env[var]) is None:
                fail(f"{name}: {var} (for {key}) is not a plain value in the worker container")
            base = key[:-len("FromEnv")]
            if base in md:
                fail(f"{name}: kafka trigger sets {base} besides {key}")
        if md.get("excludePersistentLag") != "true":
            fail(f"{name}: excludePersistentLag is {md.get('excludePersistentLag')!r}")
        if md.get("offsetResetPolicy") != "earliest":
            fail(f"{name}: offsetResetPolicy {md.get('offsetResetPolicy')!r} differs from the "
                 f"worker's auto.offset.reset=earliest")
        if md.get("allowIdleConsumers", "false") != "false":
            fail(f"{name}: allowIdleConsumers lets KEDA add replicas that get no partition")
    if clean(m):
        ok(f"{name}: ScaledObject scales the worker on lag of group "
           f"{env_value(env['PAYQ_GROUP'])} on {env_value(env['PAYQ_TOPIC'])} at "
           f"{env_value(env['PAYQ_BROKERS'])} (from the worker's env), max {a.partitions} "
           f"replicas, excludePersistentLag")

    # Alerts point at this Service's job label and these pods' names.
    m = mark()
    pr = one(docs, "PrometheusRule")
    job = svc["metadata"]["name"]
    if sm["spec"].get("jobLabel"):
        job = svc["metadata"].get("labels", {}).get(sm["spec"]["jobLabel"], job)
    fake_pod = f"{dep['metadata']['name']}-5d8f7c9b6-x2x7q"
    for g in pr["spec"]["groups"]:
        for r in g["rules"]:
            expr = r["expr"]
            for sel in re.finditer(r'\bjob\s*=\s*"([^"]*)"', expr):
                if sel.group(1) != job:
                    fail(f"{name}: rule {r.get('alert') or r.get('record')} selects job="
                         f"{sel.group(1)!r}; the ServiceMonitor's job is {job!r}")
            for sel in re.finditer(r'\bpod\s*=~\s*"([^"]*)"', expr):
                if not re.fullmatch(sel.group(1), fake_pod):
                    fail(f"{name}: rule {r.get('alert')} pod=~{sel.group(1)!r} does not match a "
                         f"worker pod name like {fake_pod}")
    if clean(m):
        ok(f"{name}: alerts select job={job!r} and the worker pods' names")

    check_network_policy(name, docs, dep, env)

    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    if len(namespaces) != 1:
        fail(f"{name}: objects in several namespaces: {namespaces}")
    finish()


def host_ports(addresses):
    """Ports of a comma-separated host:port list (PAYQ_BROKERS, PAYQ_HTTP_ADDR)."""
    return {int(a.rsplit(":", 1)[1]) for a in (addresses or "").split(",")
            if ":" in a and a.rsplit(":", 1)[1].isdigit()}


# Address ranges a rule open to the internet must leave out: the cluster's private ranges,
# loopback and the link-local cloud metadata service.
PRIVATE_RANGES = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
                  "100.64.0.0/10", "127.0.0.0/8"}


def check_network_policy(name, docs, dep, env):
    """One NetworkPolicy over every payq pod: ingress only to the HTTP port from the
    monitoring namespace; egress only DNS, Kafka, PostgreSQL and HTTPS, each to a bounded
    destination."""
    m = mark()
    pols = by_kind(docs, "NetworkPolicy")
    if len(pols) != 1:
        fail(f"{name}: want one NetworkPolicy, found {len(pols)}")
        return
    np = pols[0]
    spec = np["spec"]
    sel = spec.get("podSelector", {}).get("matchLabels", {})
    if not sel:
        fail(f"{name}: NetworkPolicy {np['metadata']['name']} selects no labels")
    pods = [dep] + by_kind(docs, "Job")
    for w in pods:
        if not labels_match(sel, w["spec"]["template"]["metadata"].get("labels", {})):
            fail(f"{name}: NetworkPolicy does not select the pods of {kn(w)}")
    if sorted(spec.get("policyTypes", [])) != ["Egress", "Ingress"]:
        fail(f"{name}: NetworkPolicy policyTypes {spec.get('policyTypes')}, want Ingress and Egress")

    http_port = host_ports(env_value(env.get("PAYQ_HTTP_ADDR", ("value", ""))))
    for r in spec.get("ingress", []):
        ports = {(p.get("protocol", "TCP"), p.get("port")) for p in r.get("ports", [])}
        if ports != {("TCP", p) for p in http_port}:
            fail(f"{name}: ingress rule opens {sorted(ports)}, want only TCP {sorted(http_port)}")
        froms = r.get("from", [])
        if not froms or any(set(f) != {"namespaceSelector"} or
                            f["namespaceSelector"].get("matchLabels") !=
                            {"kubernetes.io/metadata.name": "monitoring"} for f in froms):
            fail(f"{name}: ingress rule admits {froms}, want only the monitoring namespace")
    if not spec.get("ingress"):
        fail(f"{name}: no ingress rule: Prometheus could not scrape /metrics")

    broker_ports = host_ports(env_value(env.get("PAYQ_BROKERS", ("value", ""))))
    allowed = {("UDP", 53), ("TCP", 53), ("TCP", 5432), ("TCP", 443), ("TCP", 9093)}
    allowed |= {("TCP", p) for p in broker_ports}
    opened = set()
    for r in spec.get("egress", []):
        ports = {(p.get("protocol", "TCP"), p.get("port")) for p in r.get("ports", [])}
        if not ports:
            fail(f"{name}: egress rule {r.get('to')} allows every port")
        if not r.get("to"):
            fail(f"{name}: egress rule on {sorted(ports)} allows every destination")
        for t in r.get("to", []):
            ip = t.get("ipBlock")
            if ip and ip["cidr"] in ("0.0.0.0/0", "::/0") and \
                    not PRIVATE_RANGES <= set(ip.get("except", [])):
                fail(f"{name}: egress to {ip['cidr']} must except {sorted(PRIVATE_RANGES)}")
        if ports - allowed:
            fail(f"{name}: egress opens {sorted(ports - allowed)}: not DNS, Kafka, PostgreSQL "
                 f"nor HTTPS")
        opened |= ports
    for need, what in ((("UDP", 53), "DNS"), (("TCP", 5432), "PostgreSQL"),
                       (("TCP", 443), "the payment channel (HTTPS)")):
        if need not in opened:
            fail(f"{name}: no egress to {what} ({need[0]} {need[1]})")
    for p in broker_ports:
        if ("TCP", p) not in opened:
            fail(f"{name}: no egress to Kafka on port {p} (PAYQ_BROKERS)")
    if clean(m):
        ok(f"{name}: NetworkPolicy {np['metadata']['name']} over {', '.join(kn(w) for w in pods)}: "
           f"ingress TCP {sorted(http_port)} from namespace monitoring only; egress only to "
           f"{sorted(opened)}")


# ---------------------------------------------------------------- compose

def compose_cmd(svc):
    c = svc.get("command")
    return shlex.split(c) if isinstance(c, str) else list(c or [])


def compose_entrypoint(svc, image_entrypoint):
    e = svc.get("entrypoint")
    if e is None:
        return image_entrypoint
    return shlex.split(e) if isinstance(e, str) else list(e)


def compose_env(svc):
    env = svc.get("environment", {})
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def duration_s(s):
    total = 0.0
    for n, u in re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", str(s)):
        total += float(n) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[u]
    return total


def cmd_compose(a):
    path = a.compose
    raw = open(path).read()
    doc = yaml.safe_load(raw)
    with open(a.schema) as f:
        schema = json.load(f)
    errs = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
    for e in errs:
        where = ".".join(str(p) for p in e.absolute_path)
        fail(f"{path}: compose-spec: {where}: {e.message}")
    if not errs:
        ok(f"{path}: valid against the compose-spec schema ({schema.get('$id', a.schema)})")

    # Compose interpolates $VAR and ${VAR}; a shell's own $ must be written $$.
    for n, line in enumerate(raw.splitlines(), 1):
        code = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
        for m in re.finditer(r"\$+", code):
            if len(m.group(0)) % 2 == 1:
                fail(f"{path}:{n}: unescaped $ would be interpolated by compose: {line.strip()}")

    services = doc["services"]
    worker_settings = settings_from_help(a.worker_help)
    producer_settings = settings_from_help(a.producer_help)
    dinfo = dockerfile_info(a.dockerfile)
    image_entry = dinfo["entrypoint"]

    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            if dep not in services:
                fail(f"{path}: {name} depends on unknown service {dep}")
                continue
            c = cond.get("condition", "service_started") if isinstance(cond, dict) else "service_started"
            if c == "service_healthy" and "healthcheck" not in services[dep]:
                fail(f"{path}: {name} waits for {dep} to be healthy, but {dep} has no healthcheck")
            if c == "service_completed_successfully" and services[dep].get("restart", "no") != "no":
                fail(f"{path}: {name} waits for {dep} to complete, but {dep} restarts")

    kafka = services.get("kafka", {})
    if kafka.get("image") != f"apache/kafka:{a.kafka_version}":
        fail(f"{path}: kafka image {kafka.get('image')}, want apache/kafka:{a.kafka_version} "
             f"(the version deploy/local/kafka runs)")
    kenv = compose_env(kafka)
    roles = set((kenv.get("KAFKA_PROCESS_ROLES") or "").split(","))
    if roles != {"broker", "controller"} or "KAFKA_ZOOKEEPER_CONNECT" in kenv:
        fail(f"{path}: kafka is not a KRaft broker+controller (roles {roles})")
    else:
        ok(f"{path}: Apache Kafka {a.kafka_version} in KRaft mode (broker,controller)")
    if not str(services.get("postgres", {}).get("image", "")).startswith("postgres:15"):
        fail(f"{path}: postgres image is {services.get('postgres', {}).get('image')}")

    payq = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("payq")
            or "build" in s}
    images = {s.get("image") for s in payq.values()}
    if len(images) != 1:
        fail(f"{path}: payq services use several images: {images}")
    for n, s in payq.items():
        b = s.get("build")
        if b:
            ctx = os.path.normpath(os.path.join(os.path.dirname(path), b.get("context", ".")))
            df = os.path.join(ctx, b.get("dockerfile", "Dockerfile"))
            if os.path.realpath(df) != os.path.realpath(a.dockerfile):
                fail(f"{path}: {n} builds {df}, not {a.dockerfile}")
            if os.path.realpath(ctx) != os.path.realpath(a.root):
                fail(f"{path}: {n} build context {ctx} is not the repository root")

    workers, producers, migrates = [], [], []
    for n, s in payq.items():
        argv = compose_entrypoint(s, image_entry) + (compose_cmd(s) if s.get("command") is not None
                                                     else (dinfo["cmd"] or []))
        prog = os.path.basename(argv[0]) if argv else ""
        env = compose_env(s)
        known = worker_settings if prog == "payq-worker" else producer_settings
        unknown = [k for k in env if k.startswith("PAYQ_") and k not in known]
        if unknown:
            fail(f"{path}: {n} sets {unknown}, which {prog} does not know")
        if prog == "payq-worker" and argv[1:2] in (["run"], []):
            workers.append((n, s, env))
        elif prog == "payq-worker" and argv[1:2] == ["migrate"]:
            migrates.append((n, s, env))
        elif prog == "payq-producer":
            producers.append((n, s, env, argv))

    if len(migrates) != 1:
        fail(f"{path}: want one migrate job, found {[m[0] for m in migrates]}")
    if len(workers) < 3:
        fail(f"{path}: want 3 workers, found {[w[0] for w in workers]}")
    ids = [w[2].get("PAYQ_INSTANCE_ID") for w in workers]
    if None in ids or len(set(ids)) != len(ids):
        fail(f"{path}: worker PAYQ_INSTANCE_IDs are not distinct: {ids}")
    topic_job = [n for n, s in services.items() if "kafka-topics.sh" in json.dumps(s.get("command", ""))]
    host_ports = []
    m = mark()
    for n, s, env in workers:
        deps = s.get("depends_on") or {}
        want = {"kafka": "service_healthy", "postgres": "service_healthy"}
        want.update({m[0]: "service_completed_successfully" for m in migrates})
        want.update({t: "service_completed_successfully" for t in topic_job})
        for dep, cond in want.items():
            if (deps.get(dep) or {}).get("condition") != cond:
                fail(f"{path}: {n} does not wait for {dep} ({cond})")
        if "healthcheck" not in s:
            fail(f"{path}: {n} has no healthcheck")
        http_port = int((env.get("PAYQ_HTTP_ADDR") or worker_settings["PAYQ_HTTP_ADDR"]).rsplit(":", 1)[1])
        published = [p for p in s.get("ports", []) if str(p).rsplit(":", 1)[-1] == str(http_port)]
        if not published:
            fail(f"{path}: {n} does not publish its metrics port {http_port}")
        host_ports += [str(p).rsplit(":", 1)[0] for p in published]
        timeout_ms = int(env.get("PAYQ_SHUTDOWN_TIMEOUT_MS") or worker_settings["PAYQ_SHUTDOWN_TIMEOUT_MS"])
        if duration_s(s.get("stop_grace_period", "10s")) * 1000 <= timeout_ms:
            fail(f"{path}: {n} stop_grace_period {s.get('stop_grace_period', '10s')} is not above "
                 f"PAYQ_SHUTDOWN_TIMEOUT_MS {timeout_ms}")
        for k in ("PAYQ_TOPIC", "PAYQ_DLQ_TOPIC"):
            t = env.get(k) or worker_settings[k]
            if not any(t in json.dumps(services[j].get("command")) for j in topic_job):
                fail(f"{path}: no job creates topic {t} ({k} of {n})")
    if len(set(host_ports)) != len(host_ports):
        fail(f"{path}: workers publish the same host port: {host_ports}")
    if clean(m):
        ok(f"{path}: {len(workers)} workers ({', '.join(ids)}), each waiting for Kafka and "
           f"PostgreSQL to be healthy and the topics and migration to be done, health-checked, "
           f"metrics on {', '.join(host_ports)}")
    # The migration (payq_owner) and the workers (payq_worker) log in as different roles.
    def db_user(env):
        return dict(re.findall(r"(\w+)=(\S+)", env.get("PAYQ_DB") or "")).get("user")
    m = mark()
    for mn, _, menv in migrates:
        for n, _, env in workers:
            if db_user(env) is None or db_user(env) == db_user(menv):
                fail(f"{path}: {n} logs in to PostgreSQL as {db_user(env)}, like {mn}: the "
                     f"workers need a role of their own")
    if migrates and workers and clean(m):
        ok(f"{path}: {migrates[0][0]} logs in as {db_user(migrates[0][2])}, the workers as "
           f"{db_user(workers[0][2])}")
    if len(topic_job) != 1:
        fail(f"{path}: want one topic-creation job, found {topic_job}")
    else:
        cmd = json.dumps(services[topic_job[0]].get("command"))
        parts = re.findall(r"--partitions\s+(\d+)", cmd)
        if parts != [str(a.partitions)] or str(services[topic_job[0]].get("image")) != kafka.get("image"):
            fail(f"{path}: {topic_job[0]} does not create topics with {a.partitions} partitions "
                 f"using the kafka image (found {parts})")
        else:
            ok(f"{path}: {topic_job[0]} creates the topics with kafka-topics.sh, {a.partitions} partitions")
    if not producers or not any("generate" in p[3] for p in producers):
        fail(f"{path}: no payq-producer generate job")
    else:
        ok(f"{path}: producer job runs {' '.join(producers[0][3])}")
    finish()


# ---------------------------------------------------------------- Dockerfile

def dockerignore_patterns(path):
    pats = []
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#"):
            neg = line.startswith("!")
            pats.append((neg, line.lstrip("!").lstrip("/").rstrip("/")))
    return pats


def dockerignored(rel, pats):
    """Docker's rule: the last matching pattern wins; a pattern matching a folder excludes
    everything under it."""
    parts = rel.split("/")
    excluded = False
    for neg, p in pats:
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        hit = any(fnmatch.fnmatchcase(x, p) or (p.startswith("**/") and any(
            fnmatch.fnmatchcase(y, p[3:]) for y in [x.split("/")[-1]])) for x in prefixes)
        if hit:
            excluded = not neg
    return excluded


def cmd_dockerfile(a):
    df = a.dockerfile
    m0 = mark()
    info = dockerfile_info(df)
    if len(info["stages"]) < 2:
        fail(f"{df}: not a multi-stage build ({info['from']})")
    build, runtime = info["stages"][0], info["stages"][-1]
    suite = re.search(r"ARG DEBIAN_SUITE=(\S+)", open(df).read())
    suite = suite.group(1) if suite else ""

    def resolve(s):
        return s.replace("${DEBIAN_SUITE}", suite)

    if not re.match(r"debian:bookworm(\s|$)", resolve(build["from"])):
        fail(f"{df}: the build stage is FROM {resolve(build['from'])}, want debian:bookworm")
    if not re.match(r"debian:bookworm-slim(\s|$)", resolve(runtime["from"])):
        fail(f"{df}: the runtime stage is FROM {resolve(runtime['from'])}, want debian:bookworm-slim")

    def apt_packages(stage):
        pkgs = []
        for run in stage["runs"]:
            m = re.search(r"apt-get install ([^&;]*)", run)
            if m:
                pkgs += [w for w in m.group(1).split() if not w.startswith("-")]
        return pkgs

    build_pkgs, run_pkgs = apt_packages(build), apt_packages(runtime)
    # Every package must exist in bookworm: this machine is bookworm and builds payq with them.
    for p in build_pkgs + run_pkgs:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", p], capture_output=True, text=True)
        if "install ok installed" not in r.stdout:
            r2 = subprocess.run(["apt-cache", "show", p], capture_output=True, text=True)
            if r2.returncode or not r2.stdout.strip():
                fail(f"{df}: package {p} is neither installed here nor known to apt")
    for dev in ("librdkafka-dev", "libpq-dev", "libcjson-dev", "libmicrohttpd-dev", "libssl-dev",
                "meson", "ninja-build"):
        if dev not in build_pkgs:
            fail(f"{df}: the build stage does not install {dev}")
    dev_in_runtime = [p for p in run_pkgs if p.endswith("-dev") or p in ("build-essential", "meson")]
    if dev_in_runtime:
        fail(f"{df}: the runtime stage installs build packages {dev_in_runtime}")

    # The runtime packages must provide every shared library the installed binaries link.
    installed = json.loads(subprocess.run(["meson", "introspect", "--installed", a.build],
                                          capture_output=True, text=True, check=True).stdout)
    binaries = {os.path.basename(dst): src for src, dst in installed.items()
                if dst.startswith("/usr/local/bin/")}
    needed_pkgs = {}
    for bname, src in binaries.items():
        ldd = subprocess.run(["ldd", src], capture_output=True, text=True).stdout
        direct = re.findall(r"Shared library: \[(.*)\]",
                            subprocess.run(["readelf", "-d", src], capture_output=True,
                                           text=True).stdout)
        for so in direct:
            m = re.search(rf"^\s*{re.escape(so)} => (\S+)", ldd, re.M)
            if not m:
                fail(f"{bname}: cannot resolve {so}")
                continue
            real = os.path.realpath(m.group(1))
            owner = None
            for cand in (real, "/usr" + real if not real.startswith("/usr/") else real[4:]):
                r = subprocess.run(["dpkg-query", "-S", cand], capture_output=True, text=True)
                if r.returncode == 0:
                    owner = r.stdout.split(":")[0]
                    break
            if owner is None:
                fail(f"{bname}: no Debian package owns {real} ({so})")
            else:
                needed_pkgs.setdefault(owner, set()).add(so)
    base = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}  # in bookworm-slim already
    missing = {p: sorted(s) for p, s in needed_pkgs.items() if p not in run_pkgs and p not in base}
    if missing:
        fail(f"{df}: the runtime stage lacks packages for linked libraries: {missing}")
    else:
        ok(f"{df}: runtime packages {sorted(run_pkgs)} provide every library that "
           f"{', '.join(sorted(binaries))} link ({', '.join(sorted(set().union(*needed_pkgs.values())))})")

    if info["entrypoint"] != ["payq-worker"] or "payq-worker" not in binaries:
        fail(f"{df}: ENTRYPOINT {info['entrypoint']} is not the installed payq-worker")
    if info["cmd"] != ["run"]:
        fail(f"{df}: CMD is {info['cmd']}, want [\"run\"]")
    if info["stopsignal"] != "SIGTERM":
        fail(f"{df}: STOPSIGNAL is {info['stopsignal']}")
    user = (info["user"] or "").split(":")[0]
    if not user.isdigit() or int(user) == 0:
        fail(f"{df}: USER {info['user']!r} is not a numeric non-root user (runAsNonRoot needs one)")
    text = open(df).read()
    for m in re.finditer(r"^COPY\s+(?!--from)(?:--\S+\s+)*(\S+)\s+\S+$", text, re.M):
        src = m.group(1)
        if src != "." and not os.path.exists(os.path.join(a.root, src)):
            fail(f"{df}: COPY source {src} does not exist")
        if src != "." and dockerignored(src, dockerignore_patterns(a.dockerignore)):
            fail(f"{df}: COPY source {src} is excluded by .dockerignore")
    if "meson install" not in text or "--destdir" not in text:
        fail(f"{df}: does not install with meson install --destdir")
    # Only the production programs, from a hardened release build without the test switches.
    production = {"payq-worker", "payq-producer", "payq-replay", "payq-console"}
    if set(binaries) != production:
        fail(f"{df}: meson install puts {sorted(binaries)} in the image, want only "
             f"{sorted(production)} (no devbroker, no sandbox)")
    setups = [r for r in build["runs"] if "meson setup" in r]
    setup = setups[0] if setups else ""
    if "--buildtype=release" not in setup:
        fail(f"{df}: the build stage's meson setup is not --buildtype=release: {setup!r}")
    for bad in ("-Dcrash_points=true", "-Dhardening=false", "-Db_pie=false", "-Dmutation="):
        if bad in setup:
            fail(f"{df}: the build stage's meson setup sets {bad}")
    if clean(m0):
        ok(f"{df}: release build ({setup.split('&&')[0].strip()}) with the hardening and without "
           f"crash points; installs only {sorted(binaries)}")
    if clean(m0):
        ok(f"{df}: bookworm build, bookworm-slim runtime, USER {info['user']}, STOPSIGNAL SIGTERM, "
           f"ENTRYPOINT {info['entrypoint']} CMD {info['cmd']}, binaries {sorted(binaries)}")

    # .dockerignore keeps every source the build needs and drops the build folders.
    m = mark()
    pats = dockerignore_patterns(a.dockerignore)
    r = subprocess.run(["git", "-C", a.root, "ls-files", "--cached", "--others",
                        "--exclude-standard"], capture_output=True, text=True)
    if r.returncode == 0:
        files = r.stdout.split()
    else:  # not a git checkout: every file outside the build folders
        files = []
        for d, dirs, names in os.walk(a.root):
            rel = os.path.relpath(d, a.root)
            dirs[:] = [x for x in dirs if not (rel == "." and (x.startswith("build") or x == ".git"))]
            files += [os.path.normpath(os.path.join(rel, n)) for n in names]
    needed = [f for f in files if re.search(r"(^|/)meson(\.build|_options\.txt)$", f)
              or re.match(r"(common|worker|producer|replay|schema|deploy/local)/", f)
              or re.match(r"tests/.*\.(c|h)$", f)]
    dropped = [f for f in needed if dockerignored(f, pats)]
    if dropped:
        fail(f"{a.dockerignore}: excludes build inputs {dropped[:10]}")
    for junk in ("build/meson-logs/x", "build-deploy/x", ".git/HEAD"):
        if not dockerignored(junk, pats):
            fail(f"{a.dockerignore}: does not exclude {junk.split('/')[0]}")
    if clean(m):
        ok(f"{a.dockerignore}: keeps all {len(needed)} build inputs, drops .git and build folders")
    finish()


# ---------------------------------------------------------------- rules

def github_anchor(heading):
    h = heading.strip().lower()
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")


def cmd_rules(a):
    docs = load_docs(a.rendered)
    pr = [d for d in docs if d.get("kind") == "PrometheusRule"]
    if len(pr) != 1:
        sys.exit(f"want one PrometheusRule in {a.rendered}, found {len(pr)}")
    groups = pr[0]["spec"]["groups"]
    with open(a.out, "w") as f:
        yaml.safe_dump({"groups": groups}, f, sort_keys=False)
    anchors = set()
    with open(a.readme) as f:
        for line in f:
            m = re.match(r"#+\s+(.*)", line)
            if m:
                anchors.add(github_anchor(m.group(1)))
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    for r in alerts:
        rb = r.get("annotations", {}).get("runbook", "")
        if not rb.startswith("deploy/README.md#") or rb.split("#", 1)[1] not in anchors:
            fail(f"alert {r['alert']}: runbook {rb!r} is not a heading of {a.readme}")
        if r.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
            fail(f"alert {r['alert']}: no severity label")
        if not r.get("annotations", {}).get("summary"):
            fail(f"alert {r['alert']}: no summary")
    if not failures:
        ok(f"{len(alerts)} alerts, each with a severity, a summary and a runbook section in {a.readme}")
    print(f"wrote {a.out}: {len(groups)} groups")
    finish()


# ---------------------------------------------------------------- alert metrics

PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                   "or", "unless", "offset", "atan2", "inf", "nan", "start", "end"}
TARGET_LABELS = {"namespace", "pod", "job", "instance", "service", "endpoint", "container"}


def promql_names(expr):
    """(metric names, {metric: matcher label names}, grouping label names) of a PromQL expr."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    grouping = set()

    def drop_group(m):
        grouping.update(x.strip() for x in m.group(2).split(",") if x.strip())
        return " "

    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", drop_group, s)
    names, matchers = set(), {}
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}", s):
        labels = {x.group(1) for x in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)", m.group(2))}
        if m.group(1):
            matchers.setdefault(m.group(1), set()).update(labels - {"__name__"})
    s = re.sub(r"\{[^}]*\}", " ", s)
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", s):
        word, call = m.group(1), m.group(2)
        if call or word in PROMQL_KEYWORDS or re.fullmatch(r"\d.*", word):
            continue
        names.add(word)
    return names, matchers, grouping


def parse_scrape(path):
    names, labels, values = set(), {}, {}
    for line in open(path):
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
            continue
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{([^}]*)\})?\s+(\S+)", line)
        if not m:
            continue
        names.add(m.group(1))
        for lm in re.finditer(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""):
            labels.setdefault(m.group(1), set()).add(lm.group(1))
            values.setdefault((m.group(1), lm.group(1)), set()).add(lm.group(2))
    for n in list(names):  # histogram series belong to their family
        for suffix in ("_bucket", "_sum", "_count"):
            if n.endswith(suffix):
                labels.setdefault(n[:-len(suffix)], set()).update(labels.get(n, set()))
    return names, labels, values


def cmd_alert_metrics(a):
    with open(a.rules) as f:
        groups = yaml.safe_load(f)["groups"]
    exported, exported_labels, values = parse_scrape(a.scrape)
    allow = dict(x.split("=", 1) if "=" in x else (x, "") for x in a.allow)
    allow_labels = {m: set(v.split("+")) - {""} for m, v in allow.items()}
    records = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    all_labels = set().union(*exported_labels.values(), TARGET_LABELS,
                             *allow_labels.values()) | {"le"}
    used = set()
    for g in groups:
        for r in g["rules"]:
            what = f"alert {r['alert']}" if "alert" in r else f"record {r['record']}"
            m = mark()
            names, matchers, grouping = promql_names(r["expr"])
            used |= names
            bad = sorted(n for n in names if n not in exported and n not in allow and n not in records)
            if bad:
                fail(f"{what}: {bad} not exported by the worker (scrape {a.scrape}) nor allowlisted")
            for metric, labels in matchers.items():
                known = exported_labels.get(metric, set()) | TARGET_LABELS | allow_labels.get(metric, set())
                if metric in records:
                    continue
                for lab in sorted(labels - known):
                    fail(f"{what}: label {lab!r} of {metric} is neither in the scrape nor a target label")
            for lab in sorted(grouping - all_labels):
                fail(f"{what}: groups by label {lab!r}, which no scraped series has")
            if "alert" in r and not names:
                fail(f"{what}: names no metric")
            if clean(m):
                ok(f"{what}: {', '.join(sorted(names))}")
    for m in a.require:
        if m not in used:
            fail(f"no alert uses {m}")
    for kind in ("offset_gap", "key_reuse", "unresolved_payment", "charge_mismatch",
                 "settle_refused", "progress_rewind"):
        if kind not in values.get(("payq_anomalies_total", "kind"), set()):
            fail(f"the scrape has no payq_anomalies_total{{kind=\"{kind}\"}} series")
        if not any(f'kind="{kind}"' in r["expr"] for g in groups for r in g["rules"] if "alert" in r):
            fail(f"no alert on payq_anomalies_total{{kind=\"{kind}\"}}")
    finish()


# ---------------------------------------------------------------- worker env

def cmd_worker_env(a):
    docs = load_docs(a.rendered)
    obj = one(docs, a.kind, a.name)
    pod = obj["spec"]["template"]["spec"]
    found = [c for c in pod["containers"] if c["name"] == a.container]
    if not found:
        sys.exit(f"{a.kind}/{a.name} has no container {a.container}")
    c = found[0]
    env = container_env(docs, pod, c)
    subst = {"PAYQ_BROKERS": (a.brokers, "address"), "PAYQ_HTTP_ADDR": (a.http_addr, "address"),
             "PAYQ_TOPIC": (a.topic, "this test's own on the shared broker"),
             "PAYQ_DLQ_TOPIC": (a.dlq_topic, "this test's own on the shared broker"),
             "PAYQ_GROUP": (a.group, "this test's own on the shared broker")}
    out, report = {}, []
    for k, v in env.items():
        if k == "__secretRefs":
            sys.exit(f"envFrom secretRef {v} cannot be resolved in a test")
        if v[0] == "field":
            if v[1] != "metadata.name":
                sys.exit(f"{k}: fieldRef {v[1]} has no test value")
            out[k] = a.pod_name
            report.append((k, a.pod_name, "downward API metadata.name: a fake pod name"))
        elif v[0] == "secret":
            if k != "PAYQ_DB":
                sys.exit(f"{k}: Secret {v[1]} has no test value")
            out[k] = a.db
            report.append((k, "(test database)", f"Secret {v[1]}/{v[2]}: the test database"))
        elif v[0] == "other":
            sys.exit(f"{k}: valueFrom {v[1]} has no test value")
        elif k in subst:
            out[k] = subst[k][0]
            report.append((k, out[k], f"{subst[k][1]}: manifest has {env_value(v)!r}"))
        else:
            out[k] = env_value(v)
            report.append((k, out[k], "as in the manifest" + (f" (ConfigMap {v[1]})" if v[0] == "configmap" else "")))
    # argv: the image's ENTRYPOINT/CMD unless the container overrides them; $(VAR) expanded as
    # the kubelet does.
    dinfo = dockerfile_info(a.dockerfile)
    entry = c.get("command") or dinfo["entrypoint"]
    args = c.get("args") if "args" in c else ([] if c.get("command") else dinfo["cmd"] or [])
    argv = [re.sub(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                   lambda m: out.get(m.group(1), m.group(0)), x) for x in entry + args]
    if argv[0] != "payq-worker":
        sys.exit(f"{a.kind}/{a.name} runs {argv[0]}, not payq-worker")
    argv[0] = a.worker_exe
    with open(a.out_env, "w") as f:
        for k, v in out.items():
            f.write(f"{k}={v}\0")
    with open(a.out_argv, "w") as f:
        for x in argv:
            f.write(x + "\0")
    for k, v, why in sorted(report):
        print(f"  {k}={v}  [{why}]")
    print(f"  argv: {' '.join(shlex.quote(x) for x in argv)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("k8s-validate")
    p.add_argument("--versions", nargs="+", required=True)
    p.add_argument("--npm")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_k8s_validate)

    p = sub.add_parser("k8s-policy")
    p.add_argument("rendered")
    p.add_argument("--worker-help", required=True)
    p.add_argument("--dockerfile", required=True)
    p.add_argument("--partitions", type=int, required=True)
    p.add_argument("--expect-tag")
    p.set_defaults(func=cmd_k8s_policy)

    p = sub.add_parser("compose")
    p.add_argument("compose")
    p.add_argument("--schema", required=True)
    p.add_argument("--worker-help", required=True)
    p.add_argument("--producer-help", required=True)
    p.add_argument("--dockerfile", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--kafka-version", required=True)
    p.add_argument("--partitions", type=int, required=True)
    p.set_defaults(func=cmd_compose)

    p = sub.add_parser("dockerfile")
    p.add_argument("dockerfile")
    p.add_argument("--dockerignore", required=True)
    p.add_argument("--build", required=True)
    p.add_argument("--root", required=True)
    p.set_defaults(func=cmd_dockerfile)

    p = sub.add_parser("rules")
    p.add_argument("rendered")
    p.add_argument("--out", required=True)
    p.add_argument("--readme", required=True)
    p.set_defaults(func=cmd_rules)

    p = sub.add_parser("alert-metrics")
    p.add_argument("rules")
    p.add_argument("--scrape", required=True)
    p.add_argument("--allow", nargs="*", default=[],
                   help="metrics not from the worker, as NAME or NAME=label+label")
    p.add_argument("--require", nargs="*", default=[])
    p.set_defaults(func=cmd_alert_metrics)

    p = sub.add_parser("worker-env")
    p.add_argument("rendered")
    p.add_argument("--kind", default="Deployment")
    p.add_argument("--name", default="payq-worker")
    p.add_argument("--container", default="worker")
    p.add_argument("--dockerfile", required=True)
    p.add_argument("--worker-exe", required=True)
    for opt in ("brokers", "db", "pod-name", "http-addr", "topic", "dlq-topic", "group",
                "out-env", "out-argv"):
        p.add_argument("--" + opt, required=True)
    p.set_defaults(func=cmd_worker_env)

    a = ap.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
