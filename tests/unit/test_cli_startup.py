"""What the CLI imports before it does anything: every command (`up`, `down`, `explain` ...)
builds the whole parser first, so a heavy import there delays all of them."""

import subprocess
import sys


def test_building_the_parser_imports_no_http_library():
    code = ("import sys\n"
            "from pocketkube.cli.main import build_parser\n"
            "build_parser()\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'aiohttp', 'cryptography', 'yaml'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
