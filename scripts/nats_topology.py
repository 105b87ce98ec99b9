#!/usr/bin/env python3
"""Starts and stops a NATS JetStream supercluster on loopback, for foryou's
cluster tests and scripts/cluster-demo.sh.

  nats_topology.py start DIR us:3 sg:1 eu:1   # writes DIR/topology.json, prints it
  nats_topology.py stop DIR                   # kills every server it started (by PID)

Each region is one JetStream cluster (named after the region, every server
tagged region:<name>); the clusters are joined by gateways into one
supercluster, so a stream placed in one cluster can be mirrored in another.
Ports are picked free on 127.0.0.1. Each server keeps its store under
DIR/<server>/ and logs to DIR/<server>.log.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def plan(spec):
    regions = []
    for item in spec:
        name, _, n = item.partition(":")
        regions.append((name, int(n or "1")))
    total = sum(n for _, n in regions)
    ports = iter(free_ports(total * 3))
    servers = []
    for name, n in regions:
        for i in range(n):
            servers.append({"name": f"{name}-{i + 1}", "region": name, "client": next(ports),
                            "route": next(ports), "gateway": next(ports)})
    return regions, servers


def config(server, servers, base):
    same = [s for s in servers if s["region"] == server["region"]]
    # A one-server cluster routes to itself: JetStream in a supercluster needs
    # a configured route, and nats-server ignores the route to itself.
    routes = ", ".join(f"nats-route://127.0.0.1:{s['route']}" for s in same)
    gateways = []
    for region in sorted({s["region"] for s in servers}):
        if region == server["region"]:
            continue
        urls = ", ".join(f"nats://127.0.0.1:{s['gateway']}" for s in servers if s["region"] == region)
        gateways.append(f"    {{ name: {region}, urls: [{urls}] }}")
    store = os.path.join(base, server["name"])
    return f"""server_name: {server['name']}
listen: 127.0.0.1:{server['client']}
server_tags: ["region:{server['region']}"]
jetstream {{ store_dir: "{store}", max_memory_store: 268435456, max_file_store: 10737418240 }}
cluster {{
  name: {server['region']}
  listen: 127.0.0.1:{server['route']}
  routes: [{routes}]
}}
gateway {{
  name: {server['region']}
  listen: 127.0.0.1:{server['gateway']}
  gateways: [
{chr(10).join(gateways)}
  ]
}}
"""


def start(base, spec):
    os.makedirs(base, exist_ok=True)
    _, servers = plan(spec)
    for s in servers:
        conf = os.path.join(base, s["name"] + ".conf")
        with open(conf, "w") as f:
            f.write(config(s, servers, base))
        log = open(os.path.join(base, s["name"] + ".log"), "ab")
        p = subprocess.Popen(["nats-server", "-c", conf], stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        s["pid"] = p.pid
        s["store"] = os.path.join(base, s["name"])
        s["url"] = f"nats://127.0.0.1:{s['client']}"
    topo = {"servers": servers, "regions": {}}
    for s in servers:
        topo["regions"].setdefault(s["region"], []).append(s["url"])
    with open(os.path.join(base, "topology.json"), "w") as f:
        json.dump(topo, f, indent=1)
    wait_ready(base, servers)
    return topo


def wait_ready(base, servers, timeout=30):
    """Every server ready and every JetStream cluster with a meta leader."""
    deadline = time.time() + timeout
    for s in servers:
        log = os.path.join(base, s["name"] + ".log")
        while True:
            text = open(log, errors="replace").read() if os.path.exists(log) else ""
            if "Server is ready" in text:
                break
            if time.time() > deadline:
                raise SystemExit(f"nats-server {s['name']} not ready in {timeout}s; see {log}")
            time.sleep(0.05)
    # A JetStream meta leader for the whole supercluster.
    while True:
        text = "".join(open(os.path.join(base, s["name"] + ".log"), errors="replace").read() for s in servers)
        if "JetStream cluster new metadata leader" in text or "Self is new JetStream cluster metadata leader" in text:
            return
        if time.time() > deadline:
            raise SystemExit(f"no JetStream meta leader in {timeout}s; see {base}/*.log")
        time.sleep(0.1)


def stop(base):
    path = os.path.join(base, "topology.json")
    if not os.path.exists(path):
        return
    topo = json.load(open(path))
    for s in topo["servers"]:
        try:
            os.kill(s["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + 10
    for s in topo["servers"]:
        while time.time() < deadline:
            try:
                os.kill(s["pid"], 0)
                time.sleep(0.05)
            except ProcessLookupError:
                break
        else:
            try:
                os.kill(s["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "start":
        print(json.dumps(start(sys.argv[2], sys.argv[3:]), indent=1))
    elif len(sys.argv) == 3 and sys.argv[1] == "stop":
        stop(sys.argv[2])
    else:
        sys.exit(__doc__)
