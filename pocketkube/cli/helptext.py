"""The examples at the end of a command's --help: one place that formats them."""

from __future__ import annotations

import argparse


def examples(*lines: str) -> dict:
    """add_parser keyword arguments that end the command's --help with these example lines."""
    return {"epilog": "examples:\n" + "\n".join(f"  {line}" for line in lines),
            "formatter_class": argparse.RawDescriptionHelpFormatter}
