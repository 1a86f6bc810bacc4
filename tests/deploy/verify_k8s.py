#!/usr/bin/python3
"""Checks deploy/k8s as far as it can be without a live cluster.

kubectl renders the kustomization (it fails on a broken file or reference);
then: the NATS StatefulSet has three nodes, one volume each, and its config is
one nats-server accepts (nats-server -t); the ingestd StatefulSet has a
volume per shard and names its shard after the pod; the router's shard map
lists exactly those pods and the ingestd service; every flag a RollerTrace
container is given is one its binary (from this build) knows.

Usage: verify_k8s.py SOURCE_DIR BUILD_DIR
"""
import os
import re
import subprocess
import sys
import tempfile

import yaml

source, build = sys.argv[1], sys.argv[2]
BINARIES = {
    "ingestd": "services/ingest/ingestd",
    "rollertrace-router": "services/router/rollertrace-router",
    "mqtt-bridge": "services/bridge/mqtt-bridge",
}
failures = []


def fail(message):
    failures.append(message)
    print("FAIL: " + message)


rendered = subprocess.run(["kubectl", "kustomize", os.path.join(source, "deploy/k8s")], capture_output=True,
                          text=True, timeout=60)
if rendered.returncode != 0:
    print(rendered.stderr)
    sys.exit("kubectl kustomize deploy/k8s failed")
docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
for d in docs:
    if d["kind"] != "Namespace" and d["metadata"].get("namespace") != "rollertrace":
        fail(f"{d['kind']}/{d['metadata']['name']} is not in namespace rollertrace")

nats = by.get(("StatefulSet", "nats"))
ingestd = by.get(("StatefulSet", "ingestd"))
for kind, name in [("StatefulSet", "nats"), ("StatefulSet", "ingestd"), ("Deployment", "bridge"),
                   ("Deployment", "router"), ("Service", "ingestd"), ("Service", "nats"), ("ConfigMap", "shard-map")]:
    if (kind, name) not in by:
        fail(f"no {kind} {name}")
if failures:
    sys.exit(1)

if nats["spec"]["replicas"] != 3:
    fail("the NATS StatefulSet must have three nodes (streams have three replicas)")
for sts in (nats, ingestd):
    if not sts["spec"].get("volumeClaimTemplates"):
        fail(f"StatefulSet {sts['metadata']['name']} has no volume per pod")
if by[("Service", "ingestd")]["spec"].get("clusterIP") != "None":
    fail("the ingestd Service must be headless (the router reaches each shard by name)")

# The NATS config, as nats-server itself reads it.
conf = by[("ConfigMap", "nats-config")]["data"]["nats.conf"]
routes = re.findall(r"nats-route://(nats-\d+)\.nats\.", conf)
if sorted(routes) != [f"nats-{i}" for i in range(nats["spec"]["replicas"])]:
    fail(f"the NATS routes {routes} are not the StatefulSet's pods")
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "nats.conf")
    with open(path, "w") as f:
        f.write(conf.replace("/data/jetstream", os.path.join(tmp, "js")))
    check = subprocess.run(["nats-server", "-c", path, "-t"], capture_output=True, text=True, timeout=30,
                           env={**os.environ, "POD_NAME": "nats-0"})
    if check.returncode != 0:
        fail("nats-server refuses the NATS config: " + check.stderr.strip())

# Every RollerTrace container's flags exist.
help_of = {}
containers = []
for d in docs:
    if d["kind"] in ("Deployment", "StatefulSet"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            containers.append((d["metadata"]["name"], c))
for owner, c in containers:
    command = c.get("command", [])
    if not command or not command[0].startswith("/usr/bin/"):
        continue
    name = os.path.basename(command[0])
    if name not in BINARIES:
        fail(f"{owner}: {name} is not a RollerTrace binary")
        continue
    if name not in help_of:
        help_of[name] = subprocess.run([os.path.join(build, BINARIES[name]), "--help"], capture_output=True,
                                       text=True, timeout=30).stdout
    for arg in c.get("args", []):
        flag = arg.split("=", 1)[0]
        if flag.startswith("--") and flag not in help_of[name]:
            fail(f"{owner}: {name} has no flag {flag}")

# The shard map names the ingestd pods, at the headless service.
ingestd_args = [c for o, c in containers if o == "ingestd"][0]["args"]
if "--cluster-shard=$(POD_NAME)" not in ingestd_args:
    fail("each ingestd pod must be the shard named after it (--cluster-shard=$(POD_NAME))")
nats_urls = [a.split("=", 1)[1] for a in ingestd_args if a.startswith("--cluster-nats=")][0].split(",")
if len(nats_urls) != nats["spec"]["replicas"]:
    fail("ingestd is not given every NATS node")
shard_map = yaml.safe_load(by[("ConfigMap", "shard-map")]["data"]["shards.yaml"])
names = [s["name"] for s in shard_map["shards"]]
if names != [f"ingestd-{i}" for i in range(ingestd["spec"]["replicas"])]:
    fail(f"the shard map lists {names}, not the ingestd pods")
for s in shard_map["shards"]:
    if s["address"] != f"{s['name']}.ingestd:50051":
        fail(f"shard {s['name']} is at {s['address']}, not its pod's name in the ingestd service")
if sum(1 for s in shard_map["shards"] if s.get("default")) != 1:
    fail("the shard map needs exactly one default shard")
# The router's own parser accepts it (the ShardMap unit test does the same for deploy/cluster).

if failures:
    sys.exit(f"{len(failures)} problems in deploy/k8s")
print(f"deploy/k8s: {len(docs)} objects render; NATS config, flags and shard map check out")
