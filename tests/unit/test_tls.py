"""core/tls.py: when a process may read the system's CAs from their hashed directory instead
of parsing the bundle, and the insecure client context."""

from __future__ import annotations

import os
import ssl

import pytest

from pocketkube.core import tls


@pytest.fixture
def system_paths(tmp_path, monkeypatch):
    """This machine's OpenSSL defaults replaced by a bundle file and a CA directory of the test's."""
    bundle, directory = tmp_path / "ca-certificates.crt", tmp_path / "certs"
    bundle.write_text("")
    directory.mkdir()
    paths = ssl.DefaultVerifyPaths(str(bundle), str(directory), "SSL_CERT_FILE", str(bundle), "SSL_CERT_DIR",
                                   str(directory))
    monkeypatch.setattr(tls.ssl, "get_default_verify_paths", lambda: paths)
    return directory


def test_the_directory_is_read_when_it_holds_hash_links(system_paths):
    (system_paths / "ISRG_Root_X1.pem").write_text("")
    (system_paths / "4042bcee.0").symlink_to("ISRG_Root_X1.pem")
    environ: dict[str, str] = {}
    assert tls.system_cas_on_demand(environ)
    assert environ == {"SSL_CERT_FILE": os.devnull}


def test_nothing_changes_without_hash_links(system_paths):
    (system_paths / "ISRG_Root_X1.pem").write_text("")  # certificates, but no c_rehash links
    environ: dict[str, str] = {}
    assert not tls.system_cas_on_demand(environ)
    assert environ == {}


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "SSL_CERT_DIR"])
def test_a_place_of_the_users_own_is_kept(system_paths, variable):
    (system_paths / "4042bcee.0").write_text("")
    environ = {variable: "/etc/my-cas"}
    assert not tls.system_cas_on_demand(environ)
    assert environ == {variable: "/etc/my-cas"}


def test_an_environment_that_names_the_defaults_changes_nothing(system_paths):
    """Some machines set both variables to OpenSSL's own defaults (this one does)."""
    (system_paths / "4042bcee.0").write_text("")
    paths = tls.ssl.get_default_verify_paths()
    environ = {"SSL_CERT_FILE": paths.openssl_cafile, "SSL_CERT_DIR": paths.openssl_capath + "/"}
    assert tls.system_cas_on_demand(environ)
    assert environ["SSL_CERT_FILE"] == os.devnull


def test_insecure_client_context_checks_nothing():
    context = tls.insecure_client_context()
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    assert context.cert_store_stats()["x509"] == 0  # and parsed no bundle to get there
