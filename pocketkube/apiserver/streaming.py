"""pods/{log,exec,attach,portforward}: the API server side, a proxy to the pod's node agent.

`install(handlers, storage, agent_token=...)` registers the four subresource handlers.
Each one looks the pod up (404 if missing), checks what the API server checks (the
container name, a host assigned, and for logs the container's state as the kubelet
reports it), finds the node's InternalIP and kubelet port (status.daemonEndpoints.
kubeletEndpoint.Port, 10250 by default) and forwards the request to the agent's
streaming server (pocketkube/node/streaming.py). Upgrades (WebSocket, SPDY/3.1) are
relayed as raw bytes both ways once the agent has answered 101, so the API server never
terminates the streaming protocols; a refused upgrade's answer goes back as it came.
The agent's query is built from the options the API server read (its streamParams and
LogLocation): booleans as `1` or `true` however the client spelled them, `ports` as `port`.
"""

from __future__ import annotations

import asyncio
import math
import urllib.parse
from datetime import datetime, timezone

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from pocketkube.apiserver.kinds import registry
from pocketkube.apiserver.storage import Storage
from pocketkube.core import errors
from pocketkube.core.query import query_bool
from pocketkube.core.upgrade import hijack

DEFAULT_KUBELET_PORT = 10250
CONNECT_TIMEOUT = 10.0
MAX_HEAD = 64 * 1024
MAX_ERROR_BODY = 1 << 20
RELAY_CHUNK = 64 * 1024
HOP_HEADERS = {"host", "authorization", "content-length", "transfer-encoding", "expect", "keep-alive"}
NOT_RELAYED_BACK = {"date", "server", "content-length", "transfer-encoding", "content-type"}


def install(handlers, storage: Storage, *, agent_token: str = "") -> "AgentProxy":
    """Serve pods/log, exec, attach and portforward through the node agents."""
    proxy = AgentProxy(storage, agent_token)
    handlers.subresource_handlers[("pods", "log")] = proxy.log
    handlers.subresource_handlers[("pods", "exec")] = proxy.exec
    handlers.subresource_handlers[("pods", "attach")] = proxy.attach
    handlers.subresource_handlers[("pods", "portforward")] = proxy.port_forward
    return proxy


# ---- what the API server checks before it calls a node -------------------------------------

def all_container_names(spec: dict) -> list[str]:
    """Init, regular and ephemeral containers, in podutil.VisitContainers order."""
    return [c.get("name", "") for key in ("initContainers", "containers", "ephemeralContainers")
            for c in spec.get(key) or []]


def resolve_container(pod: dict, requested: str) -> str:
    """The container a request means (validateContainer in the pod registry)."""
    name = pod["metadata"]["name"]
    spec = pod.get("spec") or {}
    if requested:
        if requested not in all_container_names(spec):
            raise errors.bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    containers = spec.get("containers") or []
    if len(containers) == 1:
        return containers[0]["name"]
    if not containers:
        raise errors.bad_request(f"a container name must be specified for pod {name}")
    raise errors.bad_request(f"a container name must be specified for pod {name}, "
                             f"choose one of: [{' '.join(all_container_names(spec))}]")


def _container_status(pod: dict, container: str) -> dict | None:
    status = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for cs in status.get(key) or []:
            if cs.get("name") == container:
                return cs
    return None


def log_status_error(pod: dict, container: str, previous: bool) -> str | None:
    """Why the node cannot serve these logs (the kubelet's validateContainerLogStatus), or None."""
    pod_name = pod["metadata"]["name"]
    who = f'container "{container}" in pod "{pod_name}"'
    cs = _container_status(pod, container)
    if cs is None:  # not reported yet: the kubelet's first status says ContainerCreating
        return f"{who} is waiting to start: ContainerCreating" if not previous \
            else f'previous terminated container "{container}" in pod "{pod_name}" not found'
    state, last = cs.get("state") or {}, cs.get("lastState") or {}
    if previous:
        return None if last.get("terminated") is not None else \
            f'previous terminated container "{container}" in pod "{pod_name}" not found'
    if any(state.get(k) is not None for k in ("running", "terminated")) or last.get("terminated") is not None:
        return None
    reason = (state.get("waiting") or {}).get("reason", "")
    if reason == "ErrImagePull":
        return f"{who} is waiting to start: image can't be pulled"
    if reason == "ImagePullBackOff":
        return f"{who} is waiting to start: trying and failing to pull image"
    if state.get("waiting") is not None:
        return f"{who} is waiting to start: {reason}"
    return f"{who} is waiting to start - no logs yet"  # unknown state


def since_seconds(query, now: datetime | None = None) -> str | None:
    """sinceSeconds, or sinceTime turned into seconds (the agent only takes seconds)."""
    if query.get("sinceSeconds"):
        return query["sinceSeconds"]
    raw = query.get("sinceTime")
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise errors.bad_request(f'parsing time "{raw}" as "2006-01-02T15:04:05Z07:00": cannot parse') from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    elapsed = ((now or datetime.now(timezone.utc)) - when).total_seconds()
    return str(max(1, math.ceil(elapsed)))


# ---- the proxy -----------------------------------------------------------------------------

class AgentProxy:
    def __init__(self, storage: Storage, agent_token: str = ""):
        self.storage = storage
        self.agent_token = agent_token
        self._pods = registry.by_resource("", "v1", "pods")
        self._nodes = registry.by_resource("", "v1", "nodes")

    async def _pod(self, target) -> dict:
        return await self.storage.get(self._pods, target.namespace or "", target.name)

    async def _agent_address(self, pod: dict) -> tuple[str, int]:
        node_name = (pod.get("spec") or {}).get("nodeName", "")
        node = await self.storage.get(self._nodes, "", node_name)
        status = node.get("status") or {}
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") \
            or DEFAULT_KUBELET_PORT
        addresses = status.get("addresses") or []
        for kind in ("InternalIP", "ExternalIP", "Hostname"):
            for a in addresses:
                if a.get("type") == kind and a.get("address"):
                    return a["address"], int(port)
        raise errors.bad_request(f"node {node_name} has no address")  # unreachable with an agent-registered node

    def _auth_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.agent_token}"} if self.agent_token else {}

    # ---- logs --------------------------------------------------------------------------

    async def log(self, request: web.Request, target) -> web.StreamResponse:
        pod = await self._pod(target)
        container = resolve_container(pod, request.query.get("container", ""))
        if not (pod.get("spec") or {}).get("nodeName"):
            return web.Response(status=200, body=b"", content_type="text/plain")  # nowhere to read from yet
        previous = query_bool(request.query, "previous")
        problem = log_status_error(pod, container, previous)
        if problem:
            raise errors.bad_request(problem)
        host, port = await self._agent_address(pod)
        query = {k: "true" for k in ("follow", "timestamps", "previous") if query_bool(request.query, k)}
        query.update((k, request.query[k]) for k in ("tailLines", "limitBytes") if request.query.get(k))
        if (seconds := since_seconds(request.query)) is not None:
            query["sinceSeconds"] = seconds
        m = pod["metadata"]
        url = f"http://{_host(host)}:{port}/containerLogs/{_q(m['namespace'])}/{_q(m['name'])}/{_q(m['uid'])}/{_q(container)}"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.get(url, params=query, headers=self._auth_header()) as upstream:
                    if upstream.status != 200:
                        body = await upstream.content.read(MAX_ERROR_BODY)
                        return web.Response(status=upstream.status, body=body,
                                            headers={"Content-Type": upstream.headers.get("Content-Type", "text/plain")})
                    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
                    resp.enable_chunked_encoding()
                    await resp.prepare(request)
                    await relay_body(upstream, resp)
                    return resp
        except aiohttp.ClientConnectionError as exc:
            raise _dial_error(host, port, exc) from None

    # ---- exec, attach, portforward ------------------------------------------------------

    async def exec(self, request: web.Request, target) -> web.StreamResponse:
        return await self._remote_command(request, target, "exec")

    async def attach(self, request: web.Request, target) -> web.StreamResponse:
        return await self._remote_command(request, target, "attach")

    async def _remote_command(self, request: web.Request, target, verb: str) -> web.StreamResponse:
        pod = await self._pod(target)
        container = resolve_container(pod, request.query.get("container", ""))
        m = pod["metadata"]
        if not (pod.get("spec") or {}).get("nodeName"):
            raise errors.bad_request(f"pod {m['name']} does not have a host assigned")
        path = f"/{verb}/{_q(m['namespace'])}/{_q(m['name'])}/{_q(m['uid'])}/{_q(container)}"
        params = [(k, "1") for k in ("stdin", "stdout", "stderr", "tty") if query_bool(request.query, k)]
        if verb == "exec":
            params += [("command", c) for c in request.query.getall("command", [])]
        return await self._relay(request, pod, path + _query_string(params))

    async def port_forward(self, request: web.Request, target) -> web.StreamResponse:
        ports = forward_ports(request.query.getall("ports", []))
        pod = await self._pod(target)
        m = pod["metadata"]
        if not (pod.get("spec") or {}).get("nodeName"):
            raise errors.bad_request(f"pod {m['name']} does not have a host assigned")
        path = f"/portForward/{_q(m['namespace'])}/{_q(m['name'])}/{_q(m['uid'])}"
        params = [("port", ",".join(map(str, ports)))] if ports else []
        return await self._relay(request, pod, path + _query_string(params))

    async def _relay(self, request: web.Request, pod: dict, path: str) -> web.StreamResponse:
        """Replay the request to the agent; after its 101, copy bytes both ways until one side ends."""
        host, port = await self._agent_address(pod)
        try:
            agent_reader, agent_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=MAX_HEAD), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:
            raise _dial_error(host, port, exc) from None
        try:
            agent_writer.write(self._request_head(request, host, port, path))
            status, headers = await _read_response_head(agent_reader)
            if status != 101:
                body = await _read_body(agent_reader, headers)
                return web.Response(status=status, body=body,
                                    headers={"Content-Type": headers.get("Content-Type", "text/plain")})
            reply = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in NOT_RELAYED_BACK)
            client_reader, send, resp = await hijack(request, reply, MAX_HEAD)
            await _copy_both_ways(client_reader, send, agent_reader, agent_writer)
            return resp
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError) as exc:
            raise errors.internal(f"error reading from node agent {host}:{port}: {exc}") from None
        finally:
            agent_writer.close()

    def _request_head(self, request: web.Request, host: str, port: int, path: str) -> bytes:
        lines = [f"{request.method} {path} HTTP/1.1", f"Host: {_host(host)}:{port}"]
        lines += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() not in HOP_HEADERS]
        lines += [f"{k}: {v}" for k, v in self._auth_header().items()]
        if request.method != "GET":
            lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# ---- raw HTTP plumbing ---------------------------------------------------------------------

async def relay_body(upstream: aiohttp.ClientResponse, resp: web.StreamResponse) -> None:
    """Copy a backend's body into our prepared response as it comes; a client gone ends it."""
    try:
        async for chunk in upstream.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass


def _q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _query_string(params: list[tuple[str, str]]) -> str:
    return "?" + urllib.parse.urlencode(params) if params else ""


def forward_ports(values: list[str]) -> list[int]:
    """PodPortForwardOptions.ports: each value a comma-separated list of uint16 (400 otherwise)."""
    ports = []
    for value in values:
        for part in value.split(","):
            problem = "invalid syntax" if not (part.isascii() and part.isdigit()) else \
                "value out of range" if int(part) > 65535 else ""
            if problem:
                raise errors.bad_request(f"cannot convert to []int32: strconv.ParseUint: parsing "
                                         f"{errors.go_quote(part)}: {problem}")
            ports.append(int(part))
    return ports


def _dial_error(host: str, port: int, exc: BaseException) -> errors.APIError:
    if isinstance(exc, asyncio.TimeoutError):
        reason = "i/o timeout"
    elif isinstance(exc, ConnectionRefusedError) or "refused" in str(exc).lower():
        reason = "connect: connection refused"
    else:
        reason = str(exc) or exc.__class__.__name__
    return errors.internal(f"error dialing backend: dial tcp {_host(host)}:{port}: {reason}")


async def _read_response_head(reader: asyncio.StreamReader) -> tuple[int, CIMultiDict]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError(f"bad status line {lines[0]!r}")
    headers = CIMultiDict()
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers.add(name.strip(), value.strip())
    return int(parts[1]), headers


async def _read_body(reader: asyncio.StreamReader, headers: CIMultiDict) -> bytes:
    length = headers.get("Content-Length")
    if length is not None:
        return await reader.readexactly(min(int(length), MAX_ERROR_BODY))
    return await reader.read(MAX_ERROR_BODY)


async def _copy_both_ways(client_reader: asyncio.StreamReader, send, agent_reader: asyncio.StreamReader,
                          agent_writer: asyncio.StreamWriter) -> None:
    async def client_to_agent() -> None:
        while data := await client_reader.read(RELAY_CHUNK):
            agent_writer.write(data)
            await agent_writer.drain()

    async def agent_to_client() -> None:
        while data := await agent_reader.read(RELAY_CHUNK):
            await send(data)

    tasks = [asyncio.create_task(client_to_agent()), asyncio.create_task(agent_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
