"""Boolean query parameters as kube-apiserver reads them (apimachinery's query conversion, and
strconv.ParseBool for `pretty`)."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from pocketkube.apiserver import streaming as api
from pocketkube.core import errors
from pocketkube.core.query import go_parse_bool, query_bool, wants_pretty
from pocketkube.node import streaming as node


@pytest.mark.parametrize("value", ["1", "t", "T", "TRUE", "true", "True", "yes", "x", ""])
def test_an_options_boolean_is_true_unless_it_says_false(value):
    assert query_bool(MultiDict(watch=value), "watch") is True


@pytest.mark.parametrize("value", ["0", "false", "False", "FALSE", "fAlSe"])
def test_zero_and_false_in_any_case_are_false(value):
    assert query_bool(MultiDict(watch=value), "watch") is False


def test_absent_is_the_default_and_the_first_value_counts():
    assert query_bool(MultiDict(), "watch") is False
    assert query_bool(MultiDict(), "watch", default=True) is True
    assert query_bool(MultiDict([("watch", "false"), ("watch", "true")]), "watch") is False


@pytest.mark.parametrize("value, parsed", [
    ("1", True), ("t", True), ("T", True), ("TRUE", True), ("true", True), ("True", True),
    ("0", False), ("f", False), ("F", False), ("FALSE", False), ("false", False), ("False", False),
    ("tRuE", None), ("yes", None), ("", None), ("2", None),
])
def test_go_parse_bool(value, parsed):
    assert go_parse_bool(value) is parsed


@pytest.mark.parametrize("query, agent, pretty", [
    ({"pretty": "True"}, "OpenAPI-Generator/32.0.1/python", True),
    ({"pretty": "x"}, "curl/8.5.0", False),  # unparsable: false, whoever asks
    ({"pretty": "0"}, "curl/8.5.0", False),
    ({}, "curl/8.5.0", True),
    ({}, "Wget/1.21", True),
    ({}, "kubectl/v1.32.4 (linux/amd64) kubernetes/abc", False),
])
def test_pretty(query, agent, pretty):
    assert wants_pretty(MultiDict(query), agent) is pretty


def test_port_forward_ports_as_the_api_server_reads_them():
    assert api.forward_ports(["80,8080", "9090"]) == [80, 8080, 9090]
    with pytest.raises(errors.APIError, match='parsing "70000": value out of range'):
        api.forward_ports(["70000"])


@pytest.mark.parametrize("values, message", [
    ([], 'query parameter "port" is required'),
    ([""], 'query parameter "port" cannot be empty'),
    (["80,x"], 'unable to parse "80,x" as a port: strconv.ParseUint: parsing "x": invalid syntax'),
    (["0"], 'port "0" must be > 0'),
])
def test_port_forward_ports_as_the_kubelet_reads_them(values, message):
    with pytest.raises(ValueError) as exc:
        node.port_forward_ports(values)
    assert str(exc.value) == message
