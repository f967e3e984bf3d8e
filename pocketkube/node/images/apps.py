"""Small web application images, run by the bundled program programs/webapps.py.

- luksa/kubia (Kubernetes in Action): "You've hit <pod name>" on 8080; kubia:v2/v3 and
  kubia-unhealthy behave as the book describes.
- hashicorp/http-echo: -text, -listen (default :5678), -status-code.
- gcr.io/google-samples/hello-app: "Hello, world!", Version, Hostname on $PORT (8080).
- echo servers answering with the request they saw (client address and port, method, path,
  headers, pod name): ealen/echo-server (JSON, port 80), jmalloc/echo-server,
  kicbase/echo-server and inanimate/echo-server (text, port 8080).

Each image holds the Python interpreter and the bundled programs (`python_holds`).
"""

from __future__ import annotations

from pocketkube.node.images import DEFAULT_PATH, ImageConfig, ImageContext, file_size, python_holds, python_program
from pocketkube.node.images import PROGRAMS_DIR

KUBIA = ("luksa/kubia", "luksa/kubia-unhealthy")
HTTP_ECHO = ("hashicorp/http-echo",)
HELLO_APP = ("gcr.io/google-samples/hello-app", "us-docker.pkg.dev/google-samples/containers/gke/hello-app")
JSON_ECHO = ("ealen/echo-server",)
TEXT_ECHO = ("jmalloc/echo-server", "kicbase/echo-server", "inanimate/echo-server")
NAMES = KUBIA + HTTP_ECHO + HELLO_APP + JSON_ECHO + TEXT_ECHO
HEADLINE = ("luksa/kubia", "hashicorp/http-echo", "gcr.io/google-samples/hello-app", "ealen/echo-server",
            "jmalloc/echo-server")


def _kubia_mode(ctx: ImageContext) -> str:
    if ctx.ref.name == "luksa/kubia-unhealthy":
        return "unhealthy"
    return {"v2": "v2", "v3": "v3"}.get(ctx.ref.effective_tag, "v1")


def image_config(ctx: ImageContext) -> ImageConfig:
    config = _image_config(ctx)
    config.holds = python_holds(ctx)
    return config


def _image_config(ctx: ImageContext) -> ImageConfig:
    name = ctx.ref.name
    env = {"PATH": DEFAULT_PATH}
    size = file_size(f"{PROGRAMS_DIR}/webapps.py")
    if name in KUBIA:
        run = python_program(ctx, "kubia", _kubia_mode(ctx))
        return ImageConfig(entrypoint=["node", "app.js"], programs={"node": run}, env=env, size=size)
    if name in HTTP_ECHO:
        run = python_program(ctx, "http-echo")
        return ImageConfig(entrypoint=["/http-echo"], programs={"/http-echo": run, "http-echo": run},
                           env=env, size=size)
    if name in HELLO_APP:
        version = ctx.ref.effective_tag if ctx.ref.effective_tag[:1].isdigit() else "1.0"
        run = python_program(ctx, "hello-app", version)
        return ImageConfig(entrypoint=["/hello-app"], programs={"/hello-app": run, "./hello-app": run},
                           env={**env, "PORT": "8080"}, size=size)
    if name in JSON_ECHO:
        run = python_program(ctx, "echo-server", "json", "80")
        return ImageConfig(entrypoint=["node", "webserver"], programs={"node": run}, env=env, size=size)
    run = python_program(ctx, "echo-server", "text", "8080")
    return ImageConfig(entrypoint=["/bin/echo-server"], programs={"/bin/echo-server": run, "echo-server": run},
                       env={**env, "PORT": "8080"}, size=size)
