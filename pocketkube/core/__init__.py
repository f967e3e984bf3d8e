"""Shared pieces every component uses: the API client and informers, errors (metav1.Status),
selectors, object helpers and timestamps, the work queue, the cluster's names and ranges
(cluster.py) and the Linux helpers (linux.py). What only the API server uses (validation,
patches, field sets, protobuf) lives under apiserver/."""
