"""The in-cluster client reads its projected token again as the kubelet renews it."""

from __future__ import annotations

from pocketkube.core.client import HTTPTransport


async def test_token_file_is_read_again_once_old(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    t = HTTPTransport("https://127.0.0.1:1", "first", token_file=str(token_file))
    try:
        token_file.write_text("second\n")
        assert t._auth() == {"Authorization": "Bearer first"}  # not a minute old yet
        t._token_read -= HTTPTransport.TOKEN_FILE_SECONDS + 1
        assert t._auth() == {"Authorization": "Bearer second"}
    finally:
        await t.close()
