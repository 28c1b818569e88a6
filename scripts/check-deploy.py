#!/usr/bin/env python3
"""The chart values in deploy/kubernetes/ hold together with the example manifest.

Each values file uses only values its chart documents (deploy/kubernetes/charts/*.params,
taken from the chart's values.yaml), and produces the same busyguard sidecar and the same Redis
probes and preStop hook as redis-busyguard.yaml; the example's policy passes `busyguard check`
and its busyguard arguments are flags `busyguard run` has. Run by scripts/check-deploy.
"""
import copy
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
failures = []


def fail(message):
    failures.append(message)


def leaves(value, path=""):
    """Every path to a scalar or a list, the level a chart takes a value whole."""
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            yield from leaves(inner, f"{path}.{key}" if path else str(key))
    else:
        yield path


def documented(values_file, params_file):
    params = {
        line.strip()
        for line in (DEPLOY / "charts" / params_file).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    values = yaml.safe_load((DEPLOY / values_file).read_text())
    for leaf in leaves(values):
        parts = leaf.split(".")
        if not any(".".join(parts[:n]) in params for n in range(1, len(parts) + 1)):
            fail(f"{values_file}: `{leaf}` is no value the chart documents (charts/{params_file})")
    return values


def comparable(container):
    """A sidecar as it acts: the state mount may sit on the chart's own volume."""
    c = copy.deepcopy(container)
    c.pop("restartPolicy", None)
    c["volumeMounts"] = sorted(m["mountPath"] for m in c.get("volumeMounts", []))
    return c


def first(items):
    return (items or [{}])[0]


def same(what, ours, example):
    if ours != example:
        fail(f"{what} differs from redis-busyguard.yaml:\n  values:  {ours}\n  example: {example}")


docs = list(yaml.safe_load_all((DEPLOY / "redis-busyguard.yaml").read_text()))
pod = next(d for d in docs if d["kind"] == "StatefulSet")["spec"]["template"]["spec"]
sidecar = next(c for c in pod["initContainers"] if c["name"] == "busyguard")
redis = next(c for c in pod["containers"] if c["name"] == "redis")
if sidecar.get("restartPolicy") != "Always":
    fail("redis-busyguard.yaml: busyguard is not a native sidecar (restartPolicy: Always)")

bitnami = documented("bitnami-redis-values.yaml", "bitnami-redis.params")
for role in ("master", "replica"):
    side = bitnami.get(role, {})
    same(f"bitnami {role}.sidecars[0]", comparable(first(side.get("sidecars"))), comparable(sidecar))
    same(f"bitnami {role}.customLivenessProbe", side.get("customLivenessProbe"), redis["livenessProbe"])
    same(f"bitnami {role}.customReadinessProbe", side.get("customReadinessProbe"), redis["readinessProbe"])
    same(f"bitnami {role}.lifecycleHooks", side.get("lifecycleHooks"), redis["lifecycle"])

valkey = documented("valkey-helm-values.yaml", "valkey-helm.params")
same("valkey extraContainers[0]", comparable(first(valkey.get("extraContainers"))), comparable(sidecar))
for probe in ("livenessProbe", "readinessProbe"):
    custom = (valkey.get(probe) or {}).get("customProbe")
    same(f"valkey {probe}.customProbe", custom, redis[probe])

# The policy and the arguments, as busyguard reads them.
busyguard = sys.argv[1]
config = next(d for d in docs if d["kind"] == "ConfigMap")
with tempfile.NamedTemporaryFile("w", suffix=".yaml") as policy:
    policy.write(config["data"]["policy.yaml"])
    policy.flush()
    check = subprocess.run([busyguard, "check", "--syntax-only", policy.name], capture_output=True, text=True)
    if check.returncode != 0:
        fail(f"redis-busyguard.yaml: the policy fails `busyguard check`: {check.stdout}{check.stderr}")
run_help = subprocess.run([busyguard, "run", "--help"], capture_output=True, text=True).stdout
for arg in sidecar["args"]:
    if arg.startswith("--") and arg not in run_help:
        fail(f"redis-busyguard.yaml: `busyguard run` has no {arg}")

for message in failures:
    print(f"check-deploy: {message}", file=sys.stderr)
if failures:
    sys.exit(1)
print(f"check-deploy: the chart values hold together with the example ({len(docs)} objects)")
