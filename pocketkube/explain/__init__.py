"""Why traffic does (not) arrive, from the live objects: `pocketkube explain` and `pocketkube map`.

findings.py: pure checks over API objects (and the ports pods listen on) that return findings
  for a Service, an Ingress, a Pod or an Endpoints object, and render them as text or JSON.
topology.py: pure: the cluster's traffic topology (nodes, pods, Services, endpoints, Ingress
  rules) as a model, drawn as text for the terminal.
The gathering (reading the API, asking pod namespaces what they listen on) lives in
cli/explain.py; nothing here does I/O.
"""
