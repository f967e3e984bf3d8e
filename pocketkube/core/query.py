"""Boolean URL query parameters, read as kube-apiserver reads them.

Every boolean of the request options (ListOptions `watch`, `allowWatchBookmarks`,
`sendInitialEvents`; PatchOptions `force`; DeleteOptions `orphanDependents`; the pod
log, exec and attach options `follow`, `previous`, `timestamps`, `stdin`, `stdout`,
`stderr`, `tty`) goes through apimachinery's query conversion
(runtime.Convert_Slice_string_To_bool / _To_Pointer_bool): the first value counts, `0`
and `false` in any letter case are false, and anything else present is true (`True`, the
Python client's spelling up to v32, and even an empty value). Those never fail.

`pretty` alone is read with Go's strconv.ParseBool (`1 t T TRUE true True` / `0 f F FALSE
false False`) and an unparsable value counts as false; without it, pretty output is what
curl, Wget and browsers get (responsewriters' isPrettyPrint).
"""

from __future__ import annotations

from typing import Mapping

GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")
PRETTY_USER_AGENTS = ("curl", "Wget", "Mozilla/5.0")


def query_bool(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    """An options boolean: absent -> default; `0`/`false` (any case) -> False; else True."""
    value = query.get(name)
    if value is None:
        return default
    return not (value == "0" or value.lower() == "false")


def go_parse_bool(value: str) -> bool | None:
    """strconv.ParseBool: True, False, or None where Go reports `invalid syntax`."""
    if value in GO_TRUE:
        return True
    if value in GO_FALSE:
        return False
    return None


def wants_pretty(query: Mapping[str, str], user_agent: str) -> bool:
    """Whether kube-apiserver would indent its JSON answer to this request."""
    value = query.get("pretty")
    if value:
        return go_parse_bool(value) is True
    return user_agent.startswith(PRETTY_USER_AGENTS)
