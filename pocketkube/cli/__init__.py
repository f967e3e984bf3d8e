"""The `pocketkube` command line."""
