#!/usr/bin/env python3
"""Offline checks of the Grafana dashboard deploy/grafana/payq.json, for tests/deploy.

  dashboard.py DASHBOARD --rules-out FILE [--scrape METRICS] [--require-title TITLE...]
                         [--configmap RENDERED_YAML]

- The JSON is read into Grafana's dashboard model from the grafana-foundation-sdk (PyPI),
  with its panel and query plugins: a field the model does not know is lost on the way in and
  out, and is reported; every value the model read is checked against the model's type.
- Every panel target's PromQL, with Grafana's variables replaced by plain durations, becomes one
  recording rule in --rules-out, for `promtool check rules` to parse.
- With --scrape, every metric and label the queries name must be in that live scrape.
- --require-title: panels that must exist. --configmap: a kustomize rendering that must hold a
  ConfigMap labelled grafana_dashboard: "1" whose only file is this dashboard, byte for byte.
"""

import argparse
import enum
import json
import re
import sys
import types
import typing

import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from deploytool import TARGET_LABELS, fail, finish, ok, parse_scrape, promql_names

# Grafana's built-in variables, as a plain duration so that promtool can parse the query.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def lost_fields(src, out, path=""):
    """Paths of src that did not survive the model's from_json/to_json round trip."""
    if isinstance(src, dict):
        if not isinstance(out, dict):
            return [path or "/"]
        lost = []
        for k, v in src.items():
            lost += [f"{path}/{k}"] if k not in out else lost_fields(v, out[k], f"{path}/{k}")
        return lost
    if isinstance(src, list):
        if not isinstance(out, list) or len(src) != len(out):
            return [path]
        return [p for i, (a, b) in enumerate(zip(src, out)) for p in lost_fields(a, b, f"{path}[{i}]")]
    return []


def conforms(value, hint):
    """Whether value fits the model's type annotation (the model reads JSON without checking)."""
    if value is None or hint is typing.Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if origin is list:
        return isinstance(value, list) and all(conforms(v, args[0]) for v in value) if args else isinstance(value, list)
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return isinstance(value, hint) or value in {m.value for m in hint}
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # forward references and the like: not judged


def type_errors(obj, path="", seen=None):
    """Model attributes whose value does not fit their annotation, recursively."""
    seen = seen if seen is not None else set()
    if id(obj) in seen or not hasattr(obj, "__dict__") or not type(obj).__module__.startswith("grafana_foundation_sdk"):
        return []
    seen.add(id(obj))
    try:
        hints = typing.get_type_hints(type(obj))
    except Exception:  # a hint that does not resolve: judge the children only
        hints = {}
    errors = []
    for name, value in vars(obj).items():
        if name in hints and not conforms(value, hints[name]):
            errors.append(f"{path}.{name}: {value!r} is not {hints[name]}")
        children = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
        for i, c in enumerate(children):
            errors += type_errors(c, f"{path}.{name}" + (f"[{i}]" if len(children) > 1 else ""), seen)
    return errors


def check_model(src):
    register_default_plugins()
    model = Dashboard.from_json(src)
    out = json.loads(json.dumps(model, cls=JSONEncoder))
    lost = lost_fields(src, out)
    for p in lost:
        fail(f"dashboard model: {p} is not a field of Grafana's dashboard model (lost on a round trip)")
    errors = type_errors(model, "dashboard")
    for e in errors:
        fail(f"dashboard model: {e}")
    if not lost and not errors:
        ok(f"the dashboard reads into grafana-foundation-sdk's Dashboard model: {len(model.panels or [])} panels, no unknown field, every value of the model's type")


def queries(src):
    for p in src.get("panels", []):
        for t in p.get("targets", []):
            yield p, t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dashboard")
    ap.add_argument("--rules-out", required=True)
    ap.add_argument("--scrape")
    ap.add_argument("--require-title", nargs="*", default=[])
    ap.add_argument("--configmap")
    a = ap.parse_args()
    with open(a.dashboard, encoding="utf-8") as f:
        raw = f.read()
    src = json.loads(raw)

    check_model(src)
    titles = [p.get("title", "") for p in src.get("panels", [])]
    for t in a.require_title:
        if t not in titles:
            fail(f"no panel titled {t!r} (panels: {titles})")
    ids = [p.get("id") for p in src.get("panels", [])]
    if len(set(ids)) != len(ids):
        fail(f"panel ids are not unique: {ids}")

    rules = []
    for p, t in queries(src):
        expr = t.get("expr", "")
        if not expr.strip():
            fail(f"panel {p.get('title')!r} target {t.get('refId')}: no expr")
            continue
        for var, val in GRAFANA_VARS.items():
            expr = expr.replace(var, val)
        if "$" in expr:
            fail(f"panel {p.get('title')!r}: unknown variable in {expr!r}")
        rules.append({"record": f"payq_dashboard:panel{p.get('id')}_{t.get('refId')}", "expr": expr,
                      "labels": {"panel": p.get("title", "")}})
    with open(a.rules_out, "w") as f:
        yaml.safe_dump({"groups": [{"name": "payq-dashboard", "rules": rules}]}, f, sort_keys=False)
    ok(f"{len(rules)} queries written as recording rules to {a.rules_out}")

    if a.scrape:
        exported, labels, _ = parse_scrape(a.scrape)
        all_labels = set().union(*labels.values(), TARGET_LABELS) | {"le"}
        for p, t in queries(src):
            names, matchers, grouping = promql_names(t.get("expr", ""))
            where = f"panel {p.get('title')!r} {t.get('refId')}"
            if not names:
                fail(f"{where}: names no metric")
            for n in sorted(names - exported):
                fail(f"{where}: {n} is not in the worker's scrape")
            for metric, used in matchers.items():
                for lab in sorted(used - labels.get(metric, set()) - TARGET_LABELS):
                    fail(f"{where}: label {lab!r} of {metric} is not in the scrape")
            for lab in sorted(grouping - all_labels):
                fail(f"{where}: groups by {lab!r}, which no scraped series has")
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")))
            for lab in sorted(legend - all_labels):
                fail(f"{where}: legend uses {lab!r}, which no scraped series has")
        ok(f"every metric and label the dashboard names is in the scrape {a.scrape}")

    if a.configmap:
        with open(a.configmap) as f:
            cms = [d for d in yaml.safe_load_all(f) if d and d.get("kind") == "ConfigMap"
                   and (d.get("metadata", {}).get("labels") or {}).get("grafana_dashboard") == "1"]
        if len(cms) != 1:
            fail(f"want one ConfigMap labelled grafana_dashboard: \"1\", found {len(cms)}")
        elif list((cms[0].get("data") or {}).values()) != [raw]:
            fail(f"ConfigMap {cms[0]['metadata']['name']}: its data is not exactly {a.dashboard}")
        else:
            ok(f"ConfigMap {cms[0]['metadata']['name']} carries the dashboard with the Grafana sidecar label")
    finish()


if __name__ == "__main__":
    sys.path.insert(0, sys.path[0])
    main()
