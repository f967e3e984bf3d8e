"""The map page in a real headless Chromium: `pocketkube ui` (a real process, the real API server
with its controllers, objects made with the real kubectl) draws the Services and pods of the
cluster as SVG, a scale-down reaches the open page through the watch without a reload, and a
click on a Service shows its `explain` findings; `pocketkube map --html FILE` gives the same
drawing as a file that needs no server. The browser is driven over the Chrome DevTools
protocol (Runtime.evaluate) with aiohttp's websocket client.

No nodes run here, so the pods stay unscheduled: the page draws them under "(no node yet)",
and explain says why none is Ready (the scheduler's message)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
import sys
import time

import aiohttp
import pytest

from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup installs it)")
WAIT = 30.0


class Browser:
    """One headless Chromium with a fresh profile, and its first page over the DevTools protocol."""

    def __init__(self, profile: str):
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.profile = profile
        self.ids = itertools.count(1)

    async def connect(self) -> None:
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + WAIT
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            await asyncio.sleep(0.1)
        port = int(open(port_file).read().split()[0])
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as r:
            page = next(t for t in await r.json() if t["type"] == "page")
        self.ws = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)

    async def call(self, method: str, **params) -> dict:
        ident = next(self.ids)
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json()
            if message.get("id") == ident:
                assert "error" not in message, message
                return message["result"]

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def click(self, selector: str) -> None:
        await self.evaluate(f"document.querySelector({json.dumps(selector)})"
                            ".dispatchEvent(new MouseEvent('click', {bubbles: true}))")

    async def until(self, expression: str, what: str):
        deadline = time.monotonic() + WAIT
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"{what}: not true after {WAIT:g}s (last: {value!r})"
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if getattr(self, "session", None):
            await self.session.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()


@pytest.fixture
def ui(server):
    """`pocketkube ui --port 0` against the test API server; yields its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "pocketkube.cli.main", "ui", "--port", "0"], env=server.env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert "the map is at http://127.0.0.1:" in line, line + proc.stderr.read() if proc.poll() is not None else line
        yield line.split(" at ", 1)[1].split()[0]
    finally:
        proc.terminate()
        proc.wait(10)


def _objects(server, ns: str) -> None:
    server.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=3", "--port=80", "-n", ns)
    server.kubectl("expose", "deployment", "web", "--port=80", "-n", ns)
    server.kubectl("create", "service", "clusterip", "typo", "--tcp=80:80", "-n", ns)
    server.kubectl("set", "selector", "service/typo", "app=wbe", "-n", ns)


PODS = "document.querySelectorAll('.pod[data-key^=\"{ns}/web-\"]').length"


async def test_the_live_page_draws_services_and_pods_follows_a_scale_down_and_explains(server, ns, ui, tmp_path):
    _objects(server, ns)
    browser = Browser(str(tmp_path / "profile"))
    try:
        await browser.connect()
        await browser.call("Page.navigate", url=ui)
        await browser.until(f"{PODS.format(ns=ns)} === 3", "three web pods drawn")
        assert await browser.evaluate(f"!!document.querySelector('.service[data-key=\"{ns}/web\"]')")
        assert await browser.evaluate(
            f"document.querySelector('.service[data-key=\"{ns}/typo\"]').dataset.endpoints") == "0"
        updates = await browser.evaluate("Number(document.body.dataset.updates)")

        # a scale-down reaches the open page through the watch (no reload)
        server.kubectl("scale", "deployment", "web", "--replicas=1", "-n", ns)
        scaled = time.monotonic()
        await browser.until(f"{PODS.format(ns=ns)} === 1", "the scale-down drawn")
        print(f"scale-down drawn {time.monotonic() - scaled:.2f}s after kubectl scale returned")
        assert await browser.evaluate("Number(document.body.dataset.updates)") > updates

        # a click on a Service shows its findings
        await browser.click(f".service[data-key=\"{ns}/typo\"]")
        text = await browser.until("document.querySelector('#findings .finding[data-code=\"selector-matches-no-pod\"]')"
                                   "?.textContent", "the typo Service's findings")
        assert f"selector app=wbe matches no pod in namespace {ns}" in text
        assert "app=web where the selector wants app=wbe" in text
        await browser.click(f".service[data-key=\"{ns}/web\"]")
        text = await browser.until("document.querySelector('#findings .finding[data-code=\"no-ready-pods\"]')"
                                   "?.textContent", "the web Service's findings")
        assert "none is Ready" in text and "it is not scheduled" in text

        # a trace from a chosen pod to the clicked Service: `pocketkube trace`'s text
        _running_pod_on_a_node(server, ns, "client", "10.244.9.5")
        await browser.until(f"document.querySelector('.pod[data-key=\"{ns}/client\"]')?.textContent"
                            ".includes('10.244.9.5')", "the client pod drawn with its address")
        await browser.click(f".service[data-key=\"{ns}/web\"]")
        await browser.until(f"[...document.querySelectorAll('#trace-from option')].some(o => o.value === '{ns}/client')",
                            "the client pod offered in the picker")
        await browser.evaluate(f"document.getElementById('trace-from').value = '{ns}/client'")
        await browser.click("#trace-go")
        text = await browser.until("document.getElementById('trace').dataset.done && "
                                   "document.getElementById('trace').textContent", "the trace shown")
        assert f"on node {ns}-node, from pod {ns}/client (10.244.9.5):" in text, text
        cluster_ip = server.kubectl_json("get", "svc", "web", "-n", ns)["spec"]["clusterIP"]
        assert cluster_ip in text, text
    finally:
        await browser.close()
        server.kubectl("delete", "node", f"{ns}-node", "--ignore-not-found")


def _running_pod_on_a_node(server, ns: str, name: str, ip: str) -> None:
    """A pod bound to a node of its own (not Ready: nothing else lands there) and reported
    Running with `ip`, as an agent would report it (no agent runs here)."""
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"{ns}-node"},
            "spec": {"podCIDR": "10.244.9.0/24"}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
           "spec": {"nodeName": f"{ns}-node", "containers": [{"name": "c", "image": "busybox"}]}}
    server.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [node, pod]}))
    server.kubectl("patch", "node", f"{ns}-node", "--subresource=status", "--type=merge", "-p", json.dumps(
        {"status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"}]}}))
    server.kubectl("patch", "pod", name, "-n", ns, "--subresource=status", "--type=merge", "-p", json.dumps(
        {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}))


async def test_the_html_snapshot_needs_no_server(server, ns, tmp_path):
    _objects(server, ns)
    page = tmp_path / "map.html"
    cp = subprocess.run([sys.executable, "-m", "pocketkube.cli.main", "map", "--html", str(page), "-n", ns],
                        env=server.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    browser = Browser(str(tmp_path / "profile"))
    try:
        await browser.connect()
        await browser.call("Page.navigate", url=f"file://{page}")
        await browser.until(f"{PODS.format(ns=ns)} === 3", "three web pods drawn from the file")
        assert "snapshot" in await browser.evaluate("document.getElementById('status').textContent")
        await browser.click(f".service[data-key=\"{ns}/typo\"]")
        assert await browser.until("document.querySelector('#findings [data-code=\"selector-matches-no-pod\"]')"
                                   "?.textContent", "findings from the file")
    finally:
        await browser.close()
    assert f"wrote {page}" in cp.stderr


@pytest.mark.timeout(120)
def test_map_in_the_terminal_and_its_watch(server, ns):
    _objects(server, ns)
    cp = subprocess.run([sys.executable, "-m", "pocketkube.cli.main", "map", "-n", ns], env=server.env, cwd=ROOT,
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert f"  {ns}/typo  ClusterIP" in cp.stdout and "    └─✗ no endpoints (selector app=wbe)" in cp.stdout
    assert cp.stdout.count(f"○ {ns}/web-") == 3 and all(len(line) <= 100 for line in cp.stdout.splitlines())
    proc = subprocess.Popen([sys.executable, "-m", "pocketkube.cli.main", "map", "-n", ns, "--watch"], env=server.env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        def pods_drawn() -> str:
            """The pods part of the next drawing (each starts with a form feed, pods come before SERVICES)."""
            lines: list[str] = []
            while not (line := proc.stdout.readline()).startswith("SERVICES"):
                assert line, "map --watch ended"
                lines = [] if line == "\f\n" else lines + [line]
            return "".join(lines)

        assert pods_drawn().count(f"○ {ns}/web-") == 3
        server.kubectl("scale", "deployment", "web", "--replicas=1", "-n", ns)
        while pods_drawn().count(f"○ {ns}/web-") != 1:
            pass
    finally:
        proc.terminate()
        proc.wait(10)
