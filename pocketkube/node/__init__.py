"""The node agent (issue 4): pod sandboxes in network namespaces, processes, probes, logs, exec."""
