"""Cluster DNS (issue 6): record logic over a read-only cluster view, UDP and TCP server."""
