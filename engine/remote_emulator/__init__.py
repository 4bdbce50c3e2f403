"""A stand-in for the remote services of the remote long actions: a real HTTP server on
127.0.0.1, for tests and the demo (never a mock: the actions talk to it over a socket).

It serves
- Salesforce Bulk API 2.0 ingest: ``POST /services/data/vNN.N/jobs/ingest`` (create),
  ``PUT …/{id}/batches`` (the CSV), ``PATCH …/{id}`` (``UploadComplete``, ``Aborted``),
  ``GET …/{id}`` (state and counts), ``GET …/{id}/failedResults``;
- one generic job service: ``POST /api/v1/jobs``, ``GET /api/v1/jobs/{id}``,
  ``POST /api/v1/jobs/{id}/cancel``.

Records are processed at ``rate`` per second (changeable while a job runs); every
``fail_every``-th record fails. ``faults`` injects what a real remote does on a bad
day: 503s, slow responses, a connection reset, an expired token, an abort it ignores.

    emu = Emulator(tokens={"s3cret"}, rate=500).start()
    ... emu.url ...
    emu.stop()

``python -m engine.remote_emulator --port 8765`` runs one in the foreground.
"""

from engine.remote_emulator.service import Emulator, Faults, RemoteJob

__all__ = ["Emulator", "Faults", "RemoteJob"]
