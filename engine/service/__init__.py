"""What ``batchdeck serve`` runs around its engine as a service: the systemd notify link
(``notify``), the Prometheus metrics (``metrics``), the pulse both read (``pulse``),
``Service``, which joins them to a running engine (``serving``), and the ``--metrics``
address and version (``options``). Nothing here imports the command line
(``engine.cli``), and nothing is imported unless asked for.
"""
