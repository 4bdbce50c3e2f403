"""The emulator's state and its HTTP handler (stdlib ``http.server``, one thread per
connection). See ``engine.remote_emulator`` for what it serves."""

from __future__ import annotations

import csv
import io
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"
_SF_JOBS = re.compile(r"^/services/data/v\d+\.\d+/jobs/ingest/?$")
_SF_JOB = re.compile(r"^/services/data/v\d+\.\d+/jobs/ingest/(?P<id>[^/]+)(?P<rest>/[^?]*)?$")
_GENERIC_JOBS = "/api/v1/jobs"
_GENERIC_JOB = re.compile(r"^/api/v1/jobs/(?P<id>[^/]+)(?P<rest>/cancel)?/?$")
_SF_OPERATIONS = ("insert", "update", "upsert", "delete")


@dataclass
class Faults:
    """What goes wrong, consumed request by request (thread-safe through the emulator's
    lock). Counters count down; ``slow_s`` and ``ignore_abort`` hold until changed."""

    unavailable: int = 0  # the next N requests get 503
    resets: int = 0  # the next N requests have their connection reset, no answer
    slow_s: float = 0.0  # every answer waits this long first
    ignore_abort: bool = False  # an abort is answered 200 and the job runs on
    expire_token_after: int | None = None  # after N more authorized requests, refuse it


@dataclass
class RemoteJob:
    """One job on the emulated remote: Salesforce (``kind="salesforce"``) or generic."""

    id: str
    kind: str
    operation: str = ""
    object: str = ""
    external_id: str | None = None
    state: str = "Open"
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    total: int = 0
    processed_f: float = 0.0
    last: float | None = None  # when processing was last advanced (monotonic)
    abort_asked: bool = False
    created_at: float = field(default_factory=time.time)

    @property
    def processed(self) -> int:
        return min(self.total, int(self.processed_f))

    def failed(self, fail_every: int) -> int:
        return self.processed // fail_every if fail_every else 0


_SF_RUNNING = ("UploadComplete", "InProgress")
_GENERIC_RUNNING = ("queued", "running")


class Emulator:
    """The remote services on ``127.0.0.1``; ``start()`` serves in a daemon thread."""

    def __init__(
        self,
        *,
        tokens: set[str] | None = None,
        rate: float = 1000.0,
        fail_every: int = 0,
        port: int = 0,
        host: str = LOOPBACK,
    ) -> None:
        if host not in (LOOPBACK, "localhost"):
            raise ValueError("the emulator listens on 127.0.0.1 only")
        self.tokens = set(tokens or ())  # accepted bearer tokens; empty: any
        self.rate = rate  # records per second, for every running job
        self.fail_every = fail_every
        self.faults = Faults()
        self.jobs: dict[str, RemoteJob] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path), in arrival order
        self.lock = threading.RLock()
        self._seq = 0
        self._server = ThreadingHTTPServer((LOOPBACK, port), _Handler)
        self._server.daemon_threads = True
        self._server.emulator = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    # -- life ------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> Emulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="remote-emulator"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests look at --------------------------------------------------------------
    def created(self, kind: str | None = None) -> list[RemoteJob]:
        """The jobs created so far, oldest first (of one kind, if given)."""
        with self.lock:
            self._advance_all()
            return [j for j in self.jobs.values() if kind is None or j.kind == kind]

    def job(self, job_id: str) -> RemoteJob:
        with self.lock:
            j = self.jobs[job_id]
            self._advance(j)
            return j

    def upsert_task(self, file: str, **over: Any) -> dict[str, Any]:
        """A recipe's ``salesforce_bulk`` task upserting ``file`` into Account here,
        keyed by ``Ext_Id__c`` (``over``: fields to add or replace, the token's too)."""
        return {
            "name": "upsert",
            "action": "salesforce_bulk",
            "instance_url": self.url,
            "object": "Account",
            "operation": "upsert",
            "external_id_field": "Ext_Id__c",
            "file": file,
            **over,
        }

    def expire_token(self, token: str) -> None:
        with self.lock:
            self.tokens.discard(token)

    # -- processing, advanced lazily on every look ------------------------------------------
    def _advance_all(self) -> None:
        for j in self.jobs.values():
            self._advance(j)

    def _advance(self, j: RemoteJob) -> None:
        now = time.monotonic()
        running = _SF_RUNNING if j.kind == "salesforce" else _GENERIC_RUNNING
        if j.state not in running:
            j.last = None
            return
        if j.last is not None:
            j.processed_f = min(float(j.total), j.processed_f + (now - j.last) * self.rate)
        j.last = now
        if j.kind == "salesforce":
            j.state = "JobComplete" if j.processed >= j.total else "InProgress"
        else:
            j.state = "succeeded" if j.processed >= j.total else "running"

    def _new_id(self, kind: str) -> str:
        self._seq += 1
        return f"750EMU{self._seq:012d}" if kind == "salesforce" else f"job-{self._seq:04d}"

    # -- Salesforce ----------------------------------------------------------------------
    def sf_info(self, j: RemoteJob) -> dict[str, Any]:
        self._advance(j)
        return {
            "id": j.id,
            "operation": j.operation,
            "object": j.object,
            "externalIdFieldName": j.external_id,
            "contentType": "CSV",
            "state": j.state,
            "numberRecordsProcessed": j.processed,
            "numberRecordsFailed": j.failed(self.fail_every),
            "errorMessage": None,
        }

    def sf_failed_csv(self, j: RemoteJob) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["sf__Id", "sf__Error", *j.header])
        if self.fail_every:
            for n in range(self.fail_every, j.processed + 1, self.fail_every):
                writer.writerow(["", "DUPLICATE_VALUE:emulated failure:--", *j.rows[n - 1]])
        return out.getvalue()

    # -- generic --------------------------------------------------------------------------
    def generic_info(self, j: RemoteJob) -> dict[str, Any]:
        self._advance(j)
        return {
            "job": {
                "id": j.id,
                "state": j.state,
                "progress": {
                    "done": j.processed,
                    "total": j.total,
                    "failed": j.failed(self.fail_every),
                },
            }
        }


class _Refused(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "batchdeck-remote-emulator"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass  # quiet: tests and the demo share the terminal

    @property
    def emu(self) -> Emulator:
        return self.server.emulator  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._serve("PATCH")

    # -- one request ------------------------------------------------------------------------
    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        emu = self.emu
        with emu.lock:
            emu.requests.append((method, self.path))
            faults = emu.faults
            reset = faults.resets > 0
            if reset:
                faults.resets -= 1
            unavailable = not reset and faults.unavailable > 0
            if unavailable:
                faults.unavailable -= 1
            slow = faults.slow_s
        if slow:
            time.sleep(slow)
        if reset:
            self._reset()
            return
        if unavailable:
            self._send(503, {"message": "Service Unavailable (emulated)"})
            return
        try:
            self._authorize()
            with emu.lock:
                status, payload = self._route(method, body)
        except _Refused as exc:
            status, payload = exc.status, exc.body
        self._send(status, payload)

    def _reset(self) -> None:
        # SO_LINGER 0: close() sends a TCP RST, what a crashed proxy does mid-request.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _authorize(self) -> None:
        emu = self.emu
        given = self.headers.get("Authorization", "")
        token = given.removeprefix("Bearer ").strip() if given.startswith("Bearer ") else ""
        with emu.lock:
            ok = bool(token) and (not emu.tokens or token in emu.tokens)
            if ok and emu.faults.expire_token_after is not None:
                if emu.faults.expire_token_after <= 0:
                    emu.tokens.discard(token)
                    emu.faults.expire_token_after = None
                    ok = False
                else:
                    emu.faults.expire_token_after -= 1
        if not ok:
            raise _Refused(
                401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
            )

    def _send(self, status: int, payload: Any) -> None:
        if isinstance(payload, str):
            data, kind = payload.encode(), "text/csv"
        elif payload is None:
            data, kind = b"", "application/json"
        else:
            data, kind = json.dumps(payload).encode(), "application/json"
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client gave up (its timeout)

    def _json(self, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise _Refused(
                400, [{"message": "body is not JSON", "errorCode": "JSON_PARSER_ERROR"}]
            ) from None
        if not isinstance(data, dict):
            raise _Refused(400, [{"message": "expected an object", "errorCode": "INVALID_INPUT"}])
        return data

    def _route(self, method: str, body: bytes) -> tuple[int, Any]:
        path = self.path.split("?", 1)[0]
        if _SF_JOBS.match(path) and method == "POST":
            return self._sf_create(self._json(body))
        m = _SF_JOB.match(path)
        if m:
            return self._sf_job(method, m["id"], m["rest"] or "", body)
        if path.rstrip("/") == _GENERIC_JOBS and method == "POST":
            return self._generic_create(self._json(body))
        m = _GENERIC_JOB.match(path)
        if m:
            return self._generic_job(method, m["id"], m["rest"] or "")
        return 404, [{"message": f"no such resource {path}", "errorCode": "NOT_FOUND"}]

    # -- Salesforce Bulk API 2.0 ingest ------------------------------------------------------
    def _sf_create(self, data: dict[str, Any]) -> tuple[int, Any]:
        operation = data.get("operation")
        if operation not in _SF_OPERATIONS or not data.get("object"):
            raise _Refused(400, [{"message": "bad job definition", "errorCode": "INVALIDJOB"}])
        if operation == "upsert" and not data.get("externalIdFieldName"):
            raise _Refused(
                400, [{"message": "externalIdFieldName is required", "errorCode": "INVALIDJOB"}]
            )
        emu = self.emu
        j = RemoteJob(
            emu._new_id("salesforce"),  # noqa: SLF001 - the handler is the emulator's own
            "salesforce",
            operation=operation,
            object=data["object"],
            external_id=data.get("externalIdFieldName"),
        )
        emu.jobs[j.id] = j
        return 200, emu.sf_info(j)

    def _sf_job(self, method: str, job_id: str, rest: str, body: bytes) -> tuple[int, Any]:
        emu = self.emu
        j = emu.jobs.get(job_id)
        if j is None or j.kind != "salesforce":
            return 404, [{"message": f"no job {job_id}", "errorCode": "NOT_FOUND"}]
        rest = rest.rstrip("/")
        if rest == "/batches" and method == "PUT":
            if j.state != "Open":
                raise _Refused(
                    409, [{"message": f"job is {j.state}", "errorCode": "INVALIDJOBSTATE"}]
                )
            rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
            j.header, j.rows = (rows[0], rows[1:]) if rows else ([], [])
            j.total = len(j.rows)
            return 201, None
        if rest == "/failedResults" and method == "GET":
            return 200, emu.sf_failed_csv(j)
        if rest == "" and method == "GET":
            return 200, emu.sf_info(j)
        if rest == "" and method == "PATCH":
            state = self._json(body).get("state")
            emu._advance(j)  # noqa: SLF001
            if state == "UploadComplete" and j.state == "Open":
                j.state = "UploadComplete"
                j.last = time.monotonic()
            elif state == "Aborted":
                j.abort_asked = True
                if j.state not in ("Open", *_SF_RUNNING):
                    # As Salesforce answers an abort of a job that has already stopped.
                    raise _Refused(
                        400, [{"message": f"job is {j.state}", "errorCode": "INVALIDJOBSTATE"}]
                    )
                if not emu.faults.ignore_abort:
                    j.state = "Aborted"
            else:
                raise _Refused(
                    400, [{"message": f"cannot go to {state} from {j.state}", "errorCode": "X"}]
                )
            return 200, emu.sf_info(j)
        return 405, [{"message": f"{method} not allowed here", "errorCode": "METHOD"}]

    # -- the generic job service --------------------------------------------------------------
    def _generic_create(self, data: dict[str, Any]) -> tuple[int, Any]:
        records = data.get("records", 1000)
        if not isinstance(records, int) or records < 0:
            raise _Refused(400, {"error": "records must be a non-negative integer"})
        emu = self.emu
        j = RemoteJob(emu._new_id("generic"), "generic", state="running", total=records)  # noqa: SLF001
        j.last = time.monotonic()
        emu.jobs[j.id] = j
        return 201, emu.generic_info(j)

    def _generic_job(self, method: str, job_id: str, rest: str) -> tuple[int, Any]:
        emu = self.emu
        j = emu.jobs.get(job_id)
        if j is None or j.kind != "generic":
            return 404, {"error": f"no job {job_id}"}
        if rest == "/cancel" and method == "POST":
            emu._advance(j)  # noqa: SLF001
            j.abort_asked = True
            if j.state in _GENERIC_RUNNING and not emu.faults.ignore_abort:
                j.state = "canceled"
            return 202, emu.generic_info(j)
        if not rest and method == "GET":
            return 200, emu.generic_info(j)
        return 405, {"error": f"{method} not allowed here"}
