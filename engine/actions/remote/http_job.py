"""`http_job`: a job of an in-house HTTP service, described in the recipe.

    [[task]]
    name = "reindex"
    action = "http_job"
    start_url = "https://jobs.internal/api/v1/jobs"
    start_body = { records = 50000 }
    job_id_path = "job.id"                 # where the id is in the start answer's JSON
    status_url = "https://jobs.internal/api/v1/jobs/{id}"
    state_path = "job.state"
    done_path = "job.progress.done"
    total_path = "job.progress.total"
    final_states = ["succeeded", "failed", "canceled"]
    success_states = ["succeeded"]
    cancel_url = "https://jobs.internal/api/v1/jobs/{id}/cancel"
    token_env = "JOBS_TOKEN"

Paths are dotted keys into the JSON (a number picks a list item).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from engine.actions.base import Action, Param
from engine.actions.context import ActionError, TaskContext
from engine.actions.remote.client import Remote, RemoteError
from engine.actions.remote.follow import Follower, RemoteState, counts
from engine.actions.remote.params import COMMON, check_common, check_url, remote_for, timing

_MISSING = object()


def dig(data: Any, path: str) -> Any:
    """The value at dotted ``path`` in parsed JSON, or ``_MISSING``."""
    for key in path.split("."):
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif isinstance(data, list) and key.isdigit() and int(key) < len(data):
            data = data[int(key)]
        else:
            return _MISSING
    return data


class HttpJob:
    def __init__(self, remote: Remote, p: dict[str, Any]) -> None:
        self.remote = remote
        self.p = p
        self.unit = p["unit"]

    def _url(self, template: str, job_id: str) -> str:
        return template.replace("{id}", quote(job_id, safe=""))

    def _json(self, resp: Any, what: str) -> Any:
        try:
            return resp.json()
        except ValueError:
            raise RemoteError(f"{what}: the remote's answer is not JSON") from None

    def _number(self, data: Any, path: str | None, what: str) -> int | None:
        if not path:
            return None
        value = dig(data, path)
        if value is _MISSING or value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RemoteError(f"{what}: {path} is not a number ({value!r})")
        return int(value)

    async def create(self) -> str:
        resp = await self.remote.request(
            self.p["start_method"],
            self.p["start_url"],
            what="start job",
            json=self.p["start_body"],
            create=True,
        )
        job_id = dig(self._json(resp, "start job"), self.p["job_id_path"])
        if job_id is _MISSING or job_id in (None, ""):
            raise RemoteError(f"start job: no job id at {self.p['job_id_path']} in the answer")
        return str(job_id)

    async def prepare(self, job_id: str, seen: RemoteState | None) -> None:
        return None  # started by its start request: nothing to upload or close

    async def status(
        self, job_id: str, *, stop_on_cancel: bool = False, deadline: float | None = None
    ) -> RemoteState:
        resp = await self.remote.request(
            "GET",
            self._url(self.p["status_url"], job_id),
            what="job status",
            stop_on_cancel=stop_on_cancel,
            deadline=deadline,
        )
        data = self._json(resp, "job status")
        state = dig(data, self.p["state_path"])
        if state is _MISSING:
            raise RemoteError(f"job status: no state at {self.p['state_path']} in the answer")
        state = str(state)
        final = state in self.p["final_states"]
        succeeded = state in self.p["success_states"]
        canceled = self.p["canceled_states"]
        return RemoteState(
            state=state,
            done=self._number(data, self.p["done_path"], "job status") or 0,
            total=self._number(data, self.p["total_path"], "job status"),
            failed=self._number(data, self.p["failed_path"], "job status") or 0,
            final=final,
            succeeded=succeeded,
            aborted=final and not succeeded and (state in canceled if canceled else True),
        )

    async def abort(self, job_id: str, *, deadline: float) -> None:
        await self.remote.request(
            self.p["cancel_method"],
            self._url(self.p["cancel_url"], job_id),
            what="cancel job",
            json=self.p["cancel_body"],
            deadline=deadline,
        )

    async def outcome(self, job_id: str, st: RemoteState) -> str:
        if st.succeeded:
            return f"remote job {job_id} {st.state}: {counts(st, self.unit)}"
        raise ActionError(f"remote job {job_id} {st.state} on the remote: {counts(st, self.unit)}")


async def run(ctx: TaskContext, **p: Any) -> str:
    remote = remote_for(ctx, p)
    try:
        return await Follower(ctx, HttpJob(remote, p), timing(p)).run()
    finally:
        await remote.aclose()


def _check(p: dict[str, Any]) -> tuple[str, str] | None:
    for name in ("status_url", "cancel_url"):
        if "{id}" not in p[name]:
            return name, "must contain {id}, where the remote job's id goes"
        problem = check_url(p[name].replace("{id}", "x"))
        if problem:
            return name, problem
    if not p["final_states"]:
        return "final_states", "name at least one final state"
    for name in ("success_states", "canceled_states"):
        stray = [s for s in p[name] if s not in p["final_states"]]
        if stray:
            return name, f"{stray[0]!r} is not one of final_states"
    if not p["success_states"]:
        return "success_states", "name at least one state that means success"
    for name in ("job_id_path", "state_path", "done_path", "total_path", "failed_path"):
        value = p[name]
        if value is not None and (not value or "" in value.split(".")):
            return name, f"expected a dotted path such as 'job.state', got {value!r}"
    return check_common(p, "start_url")


_METHODS = ("POST", "PUT", "PATCH", "DELETE")

ACTION = Action(
    name="http_job",
    run=run,
    params=(
        Param("start_url", str),
        Param("start_method", str, required=False, default="POST", choices=_METHODS),
        Param("start_body", dict, required=False, default=None),
        Param("job_id_path", str, required=False, default="id"),
        Param("status_url", str),
        Param("state_path", str, required=False, default="state"),
        Param("done_path", str, required=False, default=None),
        Param("total_path", str, required=False, default=None),
        Param("failed_path", str, required=False, default=None),
        Param("final_states", list),
        Param("success_states", list),
        Param("canceled_states", list, required=False, default=[]),
        Param("cancel_url", str),
        Param("cancel_method", str, required=False, default="POST", choices=_METHODS),
        Param("cancel_body", dict, required=False, default=None),
        Param("unit", str, required=False, default="records"),
        *COMMON,
    ),
    long=True,
    doc="A job of an in-house HTTP service, described in the recipe: start it, follow "
    "its counts; a cancel sends the recipe's cancel request to the remote.",
    check=_check,
)
