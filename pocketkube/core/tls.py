"""TLS set-up every component shares, made without parsing the system's CA bundle where
nothing needs it.

- `system_cas_on_demand()`: at a process's start, OpenSSL is told to read the system's
  trusted CAs from their hashed directory, one certificate when a chain asks for it, rather
  than parsing the whole bundle file in every context that trusts them. aiohttp makes two
  such contexts at import, in every process of ours, and uses neither (our clients bring the
  cluster's CA): 30-50 ms of CPU each on this 2-core machine, a fifth of the API server's
  imports.
- `insecure_client_context()`: a client context that checks nothing, for the connections a
  cluster makes without verifying: the kubelet's HTTPS probes, the API server's proxy to pods
  and nodes, `join`'s first read of cluster-info (checked against its pinned hash after).
"""

from __future__ import annotations

import os
import re
import ssl

_HASH_LINK = re.compile(r"[0-9a-f]{8}\.[0-9]+")


def system_cas_on_demand(environ=os.environ) -> bool:
    """Point OpenSSL's CA file at /dev/null so that the system's CAs come from its hashed CA
    directory alone, when that directory holds the same set in hashed form (Debian's
    update-ca-certificates writes both) and the environment names no other place (naming the
    defaults, as some machines do, is no other place). Trust is unchanged; only the eager parse
    of the bundle goes. Returns whether it did."""
    paths = ssl.get_default_verify_paths()
    for variable, default in (("SSL_CERT_FILE", paths.openssl_cafile), ("SSL_CERT_DIR", paths.openssl_capath)):
        if variable in environ and os.path.realpath(environ[variable]) != os.path.realpath(default):
            return False  # CAs of the user's own
    if not paths.cafile or not paths.capath:  # nothing parsed eagerly, or no directory to read instead
        return False
    try:
        with os.scandir(paths.capath) as entries:
            if not any(_HASH_LINK.fullmatch(entry.name) for entry in entries):
                return False
    except OSError:
        return False
    environ["SSL_CERT_FILE"] = os.devnull
    return True


def insecure_client_context() -> ssl.SSLContext:
    """A TLS client context that verifies neither the peer's certificate nor its name."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
