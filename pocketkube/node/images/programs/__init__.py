"""Programs the catalog's images run inside pods (standard library only, run as scripts)."""
