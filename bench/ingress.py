"""Ingress benchmarks (root: a real 1-node cluster with the ingress add-on), each figure beside
its goal in one table.

- Throughput: wrk in the client pod, the same threads, connections and duration for each
  target, all proxying to the same 2 nginx pods: (A) the Ingress controller (its Service's
  cluster IP, Host bench.local), (B) the same Debian nginx with a hand-written configuration
  of the same shape (worker_processes auto, an upstream of the pod IPs with keepalive, the
  same proxy headers and access log) in a pod of its own behind a Service, (C) one nginx pod
  directly by its IP. Interleaved A B C, --rounds times; the median ratio A/B with its spread
  (min-max over the rounds; refused when they disagree more than the effect), p99 from wrk. Goal A/B >= 0.9x. C/B above 1 shows what a proxy
  hop costs; the client runs on the same 2 cores, so the absolute numbers are the machine's.
- Change to traffic, from the host through the controller's NodePort, polling every 5 ms:
  (1) an Ingress for a new host created -> its first 200; (2) a Service's selector moved
  from one set of pods to another (the endpoints change, the Ingress does not) -> the first
  answer from the new pods. p50 and p99 over --samples. Goal p99 < 500 ms; anchor:
  ingress-nginx's default sync rate limit (0.3 syncs/s) makes a change wait seconds.
- 1,000 Ingresses: `kubectl apply` of one List of --bulk Ingresses (one host each), the time
  until the API has them, and until the controller answers for the last one.

    sudo .venv/bin/python -m bench.ingress [--rounds 11] [--duration 4] [--samples 20] [--bulk 1000] [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time

from bench import harness
from bench.dataplane import DataplaneCluster, WrkResult, run_wrk, until
from bench.pods import Row, _cli, percentile, run_measurements
from bench.dataplane import CLUSTER_NAME

THROUGHPUT_GOAL = 0.9
CHANGE_P99_GOAL_MS = 500.0
POLL = 0.005
HOST = "bench.local"

HAND_CONF = """\
worker_processes auto;
pid /tmp/hand-nginx.pid;
error_log stderr notice;
events {{ worker_connections 16384; multi_accept on; }}
http {{
    access_log /dev/stdout combined buffer=64k flush=1s;  # as the controller writes its log
    sendfile on;
    keepalive_timeout 75s;
    keepalive_requests 1000;
    proxy_http_version 1.1;
    proxy_buffering off;
    client_body_temp_path /tmp/client-body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    upstream backends {{
{servers}
        keepalive 320;
    }}
    server {{
        listen 80 default_server reuseport backlog=4096;
        location / {{
            proxy_set_header Host $http_host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Connection "";
            proxy_pass http://backends;
        }}
    }}
}}
"""


def ingress(name: str, host: str, service: str, labels: dict | None = None) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"ingressClassName": "nginx",
                     "rules": [{"host": host, "http": {"paths": [
                         {"path": "/", "pathType": "Prefix",
                          "backend": {"service": {"name": service, "port": {"number": 80}}}}]}}]}}


def echo(name: str, text: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "echo", "image": "hashicorp/http-echo",
                                         "args": [f"-text={text}", "-listen=:8080"],
                                         "readinessProbe": {"httpGet": {"path": "/", "port": 8080},
                                                            "periodSeconds": 1}}]}}}}


class IngressBench:
    """The dataplane cluster with the ingress add-on, nginx at 2 replicas and the entry point."""

    def __init__(self, dc: DataplaneCluster):
        self.dc = dc
        cp = _cli("addons", "enable", "ingress", "--name", CLUSTER_NAME, env=dc.cluster.env)
        if cp.returncode != 0:
            raise RuntimeError(f"addons enable ingress: {cp.stdout}{cp.stderr}")
        svc = dc.kubectl_json("get", "svc", "-n", "ingress-nginx", "ingress-nginx-controller")
        self.controller_ip = svc["spec"]["clusterIP"]
        self.node_port = next(p["nodePort"] for p in svc["spec"]["ports"] if p["port"] == 80)
        self.node_ip = dc.node.ip

    def apply(self, *objects: dict) -> None:
        self.dc.kubectl("apply", "-f", "-", input="\n".join(json.dumps(o) for o in objects))

    def answer(self, host: str, timeout: float = 0.5) -> bytes:
        """One request from the host through the NodePort on a new connection: the response."""
        try:
            with socket.create_connection((self.node_ip, self.node_port), timeout=timeout) as s:
                s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                return data
        except OSError:
            return b""

    def nginx_pods(self, replicas: int) -> list[str]:
        self.dc.kubectl("scale", "deployment", "nginx", f"--replicas={replicas}")

        def ips():
            pods = self.dc.kubectl_json("get", "pods", "-l", "app=nginx")["items"]
            ready = [p["status"]["podIP"] for p in pods if p["status"].get("podIP") and not
                     p["metadata"].get("deletionTimestamp") and any(
                         c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])]
            return sorted(ready) if len(ready) == replicas else None
        return until(ips, f"{replicas} ready nginx pods")


def throughput(args) -> list:
    with DataplaneCluster(args) as dc:
        bench = IngressBench(dc)
        ips = bench.nginx_pods(2)
        servers = "\n".join(f"        server {ip}:80 max_fails=0;" for ip in ips)
        bench.apply(ingress("bench", HOST, "nginx"),
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "hand-nginx"},
                     "data": {"nginx.conf": HAND_CONF.format(servers=servers)}},
                    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hand-nginx", "labels": {"app": "hand"}},
                     "spec": {"terminationGracePeriodSeconds": 1,
                              # the controller's seccomp filter too: the same syscall cost on both sides
                              "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                              "volumes": [{"name": "conf", "configMap": {"name": "hand-nginx"}}],
                              "containers": [{"name": "nginx", "image": "nginx",
                                              "command": ["nginx", "-c", "/etc/hand/nginx.conf", "-g", "daemon off;"],
                                              "volumeMounts": [{"name": "conf", "mountPath": "/etc/hand"}],
                                              "readinessProbe": {"httpGet": {"path": "/", "port": 80}}}]}},
                    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hand-nginx"},
                     "spec": {"selector": {"app": "hand"}, "ports": [{"port": 80}]}})
        dc._ready_pod("app=hand")
        hand_ip = dc.kubectl_json("get", "svc", "hand-nginx")["spec"]["clusterIP"]
        until(lambda: dc.in_client("curl", "-sf", "-o", "/dev/null", "-m", "2", "-H", f"Host: {HOST}",
                                   f"http://{bench.controller_ip}/").returncode == 0, "the controller routing bench.local")
        # explicit ports: the client image has no /etc/services for wrk to look "http" up in
        targets = {"controller": (f"http://{bench.controller_ip}:80/", HOST), "hand": (f"http://{hand_ip}:80/", None),
                   "direct": (f"http://{ips[0]}:80/", None)}
        runs: dict[str, list[WrkResult]] = {k: [] for k in targets}
        for _ in range(args.rounds):
            for name, (url, host) in targets.items():
                runs[name].append(run_wrk(dc, url, args, host))

    def rps(name: str) -> list[float]:
        return [r.rps for r in runs[name]]

    def summary(name: str) -> str:
        errors = sorted({r.errors for r in runs[name] if r.errors})
        return (f"{name}: {statistics.median(rps(name)):.0f} req/s, p99 "
                f"{statistics.median(r.p99_ms for r in runs[name]):.2f} ms" + (f" [{'; '.join(errors)}]" if errors else ""))

    return [harness.ratio_row("through the Ingress controller (Service IP, Host header) / hand-written nginx",
                              harness.ratio(rps("controller"), rps("hand")), goal=THROUGHPUT_GOAL),
            harness.spread_row("through a hand-written Debian nginx (same pods, same shape), at the yardstick CPU speed",
                               harness.spread([r.rps_at_yardstick for r in runs["hand"]]), "req/s"),
            harness.ratio_row("to one nginx pod directly / hand-written nginx",
                              harness.ratio(rps("direct"), rps("hand")),
                              note="above 1: what a proxy hop costs at all"),
            f"throughput, {args.rounds} interleaved rounds of wrk -t{args.threads} -c{args.connections} "
            f"-d{args.duration}s from a client pod: " + "; ".join(summary(n) for n in runs)]


def change_to_traffic(args) -> list:
    created: list[float] = []
    moved: list[float] = []
    with DataplaneCluster(args) as dc:
        bench = IngressBench(dc)
        bench.apply(echo("blue", "blue"), echo("green", "green"),
                    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "flip"},
                     "spec": {"selector": {"app": "blue"}, "ports": [{"port": 80, "targetPort": 8080}]}},
                    ingress("flip", "flip.local", "flip"))
        dc._ready_pod("app=blue")
        dc._ready_pod("app=green")
        until(lambda: b"blue" in bench.answer("flip.local"), "flip.local answering blue")
        for i in range(args.samples):
            host = f"new-{i}.local"
            start = time.monotonic()
            bench.apply(ingress(f"new-{i}", host, "flip"))
            until(lambda: bench.answer(host).startswith(b"HTTP/1.1 200"), f"{host} answering", interval=POLL)
            created.append((time.monotonic() - start) * 1000)
        colour = "blue"
        for _ in range(args.samples):
            colour = "green" if colour == "blue" else "blue"
            start = time.monotonic()
            dc.kubectl("patch", "svc", "flip", "-p", json.dumps({"spec": {"selector": {"app": colour}}}))
            until(lambda: colour.encode() in bench.answer("flip.local"), f"flip.local answering {colour}",
                  interval=POLL)
            moved.append((time.monotonic() - start) * 1000)
    rows = []
    for what, samples in (("Ingress created -> first 200 (from the host)", created),
                          ("Service endpoints changed -> traffic follows", moved)):
        rows.append(Row(what + " p50", percentile(samples, 50), "ms"))
        rows.append(Row(what + " p99", percentile(samples, 99), "ms", goal=CHANGE_P99_GOAL_MS,
                        detail=f"({len(samples)} samples; each includes the kubectl call, ~0.1 s)"))
    return rows


def bulk(args) -> list:
    with DataplaneCluster(args) as dc:
        bench = IngressBench(dc)
        items = [ingress(f"bulk-{i}", f"bulk-{i}.local", "nginx", {"bench": "bulk"}) for i in range(args.bulk)]
        start = time.monotonic()
        dc.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        stored = time.monotonic() - start
        last = f"bulk-{args.bulk - 1}.local"
        until(lambda: bench.answer(last, timeout=2).startswith(b"HTTP/1.1 200"), f"{last} answering",
              timeout=600, interval=0.05)
        served = time.monotonic() - start
        reloads = dc.kubectl("logs", "-n", "ingress-nginx", "deploy/ingress-nginx-controller").count(
            "Backend successfully reloaded")
    return [Row(f"kubectl apply of {args.bulk} Ingresses (one List)", stored, "s"),
            Row(f"... until the controller answers for the last one", served, "s",
                detail=f"({reloads} nginx reloads in the controller's log)")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 11 rounds of 4 s, not 5 of 8: the min–max of few rounds is narrower than a re-run's
    # (harness.REROUND_AGREEMENT)
    p.add_argument("--rounds", type=int, default=11, help="interleaved wrk rounds (A B C each)")
    p.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--bulk", type=int, default=1000)
    p.add_argument("--only", choices=("throughput", "change_to_traffic", "bulk"))
    harness.add_json_argument(p)
    p.add_argument("--machine-timeout", type=float, default=1800.0,
                   help="how long to wait for another cluster to leave the machine")
    args = p.parse_args()
    run_measurements("Ingress", [throughput, change_to_traffic, bulk], args)


if __name__ == "__main__":
    sys.exit(main())
