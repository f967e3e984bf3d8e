"""pocketkube's Ingress controller, built as ingress-nginx is: a controller process that watches
Ingresses, IngressClasses, Services, EndpointSlices, Secrets and its ConfigMap, decides the
routes (routes.py, pure functions, also read by `pocketkube trace`), renders them as an
nginx.conf (nginxconf.py) and runs Debian's nginx as the data plane (nginx.py), reloading it
gracefully after `nginx -t` accepts each new configuration (controller.py).
"""
