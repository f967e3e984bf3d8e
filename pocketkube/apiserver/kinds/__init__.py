"""One module per API kind: defaults, validation, strategy. `registry` lists them all."""
