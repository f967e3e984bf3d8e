"""The service proxy (issue 5): change tracker, nftables and userspace backends, packet tracer."""
