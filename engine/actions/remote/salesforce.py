"""`salesforce_bulk`: a Salesforce Bulk API 2.0 ingest job, run on the remote service.

Create the job (``POST …/jobs/ingest``), upload the CSV (``PUT …/batches``), close it
(``PATCH state=UploadComplete``), follow ``numberRecordsProcessed`` and
``numberRecordsFailed`` (``GET …/jobs/ingest/{id}``); cancel and abort send ``PATCH
state=Aborted``. Afterwards the failed records (``GET …/failedResults``) are written to
a local CSV named in the task's message.
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
from typing import Any

from engine.actions.base import Action, Param
from engine.actions.context import ActionError, TaskContext
from engine.actions.remote.client import Remote, RemoteError
from engine.actions.remote.follow import Follower, RemoteState, counts
from engine.actions.remote.params import COMMON, check_common, remote_for, timing

OPERATIONS = ("insert", "update", "upsert", "delete")
# Salesforce's own job states, and what each means here.
_FINAL = {"JobComplete", "Failed", "Aborted"}
_API_VERSION = re.compile(r"^v?(\d{2,3}\.\d)$")
_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _count_records(path: str) -> tuple[list[str], int, str]:
    """The CSV's header, its number of records and its line ending as the API names it
    (blocking: run in a thread)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, strict=True)
            header = next(reader, None)
            if not header:
                raise ActionError(f"{path}: empty file, no header row")
            total = sum(1 for row in reader if row)
        with open(path, "rb") as raw:
            ending = "CRLF" if raw.readline().endswith(b"\r\n") else "LF"
        return [h.strip() for h in header], total, ending
    except FileNotFoundError:
        raise ActionError(f"{path}: no such file") from None
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise ActionError(f"{path}: not readable as CSV: {exc}") from None


class SalesforceJob:
    unit = "records"

    def __init__(
        self, ctx: TaskContext, remote: Remote, p: dict[str, Any], total: int, line_ending: str
    ) -> None:
        self.ctx = ctx
        self.line_ending = line_ending
        self.remote = remote
        self.p = p
        self.total = total
        version = _API_VERSION.match(p["api_version"])
        assert version is not None  # checked with the recipe
        base = p["instance_url"].rstrip("/")
        self.jobs_url = f"{base}/services/data/v{version[1]}/jobs/ingest"

    def _url(self, job_id: str, rest: str = "") -> str:
        # As the Bulk API 2.0 reference writes them: …/jobs/ingest/jobID/batches/
        return f"{self.jobs_url}/{job_id}/" + (f"{rest}/" if rest else "")

    async def create(self) -> str:
        body = {
            "object": self.p["object"],
            "operation": self.p["operation"],
            "contentType": "CSV",
            "lineEnding": self.line_ending,
        }
        if self.p["external_id_field"]:
            body["externalIdFieldName"] = self.p["external_id_field"]
        resp = await self.remote.request(
            "POST", f"{self.jobs_url}/", what="create job", json=body, create=True
        )
        job_id = _field(resp, "id")
        if not isinstance(job_id, str) or not job_id:
            raise RemoteError("create job: the remote's answer has no job id")
        return job_id

    async def prepare(self, job_id: str, seen: RemoteState | None) -> None:
        if seen is not None and seen.state != "Open":
            return  # uploaded and closed by an earlier attempt
        # Open: this attempt or an earlier one made the job and the data may not be
        # there; an upload to an Open job replaces it (one upload per job).
        data = await asyncio.to_thread(_read_bytes, self.p["file"])
        self.ctx.log(f"uploading {self.total:,} records to remote job {job_id}")
        await self.remote.request(
            "PUT",
            self._url(job_id, "batches"),
            what="upload CSV",
            content=data,
            headers={"Content-Type": "text/csv"},
        )
        await self.remote.request(
            "PATCH", self._url(job_id), what="close job", json={"state": "UploadComplete"}
        )

    async def status(
        self, job_id: str, *, stop_on_cancel: bool = False, deadline: float | None = None
    ) -> RemoteState:
        resp = await self.remote.request(
            "GET",
            self._url(job_id),
            what="job status",
            stop_on_cancel=stop_on_cancel,
            deadline=deadline,
        )
        state = str(_field(resp, "state"))
        return RemoteState(
            state=state,
            done=int(_field(resp, "numberRecordsProcessed") or 0),
            total=self.total,
            failed=int(_field(resp, "numberRecordsFailed") or 0),
            final=state in _FINAL,
            succeeded=state == "JobComplete",
            aborted=state == "Aborted",
            error=_field(resp, "errorMessage"),
        )

    async def abort(self, job_id: str, *, deadline: float) -> None:
        await self.remote.request(
            "PATCH",
            self._url(job_id),
            what="abort job",
            json={"state": "Aborted"},
            deadline=deadline,
        )

    async def outcome(self, job_id: str, st: RemoteState) -> str:
        where = await self._failed_records(job_id, st)
        done = f"{counts(st, self.unit)}{where}"
        if st.succeeded:
            what = f"{self.p['operation']} of {self.p['object']}"
            return f"{what} done on the remote (job {job_id}): {done}"
        if st.aborted:
            raise ActionError(f"remote job {job_id} was aborted on the remote after {done}")
        why = f": {st.error}" if st.error else ""
        raise ActionError(f"remote job {job_id} {st.state}{why}; {done}")

    async def _failed_records(self, job_id: str, st: RemoteState) -> str:
        """Fetch the failed records to a local CSV; the words naming it."""
        if not st.failed:
            return ""
        path = self.p["failed_file"] or f"{os.path.splitext(self.p['file'])[0]}.failed.csv"
        try:
            resp = await self.remote.request(
                "GET", self._url(job_id, "failedResults"), what="failed records"
            )
            await asyncio.to_thread(_write_bytes, path, resp.content)
        except (RemoteError, OSError) as exc:
            return f"; the failed records could not be fetched: {exc}"
        return f"; failed records in {path}"


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ActionError(f"{path}: {exc.strerror or exc}") from None


def _write_bytes(path: str, data: bytes) -> None:
    tmp = path + ".partial"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _field(resp: Any, name: str) -> Any:
    try:
        data = resp.json()
    except ValueError:
        raise RemoteError("the remote's answer is not JSON") from None
    return data.get(name) if isinstance(data, dict) else None


async def run(ctx: TaskContext, **p: Any) -> str:
    header, total, ending = await asyncio.to_thread(_count_records, p["file"])
    key = p["external_id_field"]
    if key and key not in header:
        raise ActionError(
            f"{p['file']}: external id column {key!r} is not in the header "
            f"(columns: {', '.join(header)})"
        )
    ctx.progress(0, total, "records")
    remote = remote_for(ctx, p)
    try:
        return await Follower(ctx, SalesforceJob(ctx, remote, p, total, ending), timing(p)).run()
    finally:
        await remote.aclose()


def _check(p: dict[str, Any]) -> tuple[str, str] | None:
    if not _API_VERSION.match(p["api_version"]):
        return "api_version", f"expected a version such as '62.0', got {p['api_version']!r}"
    if not _FIELD.match(p["object"]):
        return "object", f"not an object name: {p['object']!r}"
    key = p["external_id_field"]
    if p["operation"] == "upsert" and not key:
        return "external_id_field", "an upsert needs the external id field"
    if key and not _FIELD.match(key):
        return "external_id_field", f"not a field name: {key!r}"
    return check_common(p, "instance_url")


ACTION = Action(
    name="salesforce_bulk",
    run=run,
    params=(
        Param("instance_url", str),
        Param("api_version", str, required=False, default="62.0"),
        Param("object", str),
        Param("operation", str, choices=OPERATIONS),
        Param("external_id_field", str, required=False, default=None),
        Param("file", str, is_path=True),
        Param("failed_file", str, required=False, default=None, is_path=True),
        *COMMON,
    ),
    long=True,
    doc="A Salesforce Bulk API 2.0 ingest job run on the remote: create, upload, close, "
    "follow; a cancel aborts the remote job.",
    check=_check,
)
