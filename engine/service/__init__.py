"""batchdeck as a service: what ``serve`` tells systemd (``notify``), the Prometheus
metrics it serves (``metrics``), the health check a monitor runs (``health``), the
unit file (``unit``) and the shell completion (``completion``). ``attach`` joins the
first two to a running engine; nothing here is imported unless asked for.
"""
