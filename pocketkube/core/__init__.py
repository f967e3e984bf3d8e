"""Shared pieces with no I/O of their own: errors, selectors, names, patches, wire formats."""
