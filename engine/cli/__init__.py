"""The ``batchdeck`` command line. ``main`` parses (``parser``, with the value types in
``arguments``) and runs one command, imported only then: ``jobs`` (submit, recipes
check, list, show, rerun, hold, release, approve, reject), ``cancel`` (cancel, abort,
one job or ``--all``), ``serve`` (serve, servers), ``settings``, ``logs``, ``prune``,
``health``, ``unit`` (service unit) and ``completion``. What they share (exit codes,
``Fail``, opening the database) is in ``shared``; their words in ``output``.
"""
