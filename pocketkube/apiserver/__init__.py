"""The API server: HTTP handlers, discovery, OpenAPI, Tables, watch cache, admission."""
