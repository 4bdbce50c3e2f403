"""Remote long actions: a job that runs on another system, followed and canceled there.

``salesforce_bulk`` (Bulk API 2.0 ingest) and ``http_job`` (an in-house service, as the
recipe describes it); ``client`` holds the HTTP side (token, timeouts, retries),
``follow`` the part they share (record the remote job, follow it, cancel and abort it).
"""

from engine.actions.remote import http_job, salesforce

SALESFORCE_BULK = salesforce.ACTION
HTTP_JOB = http_job.ACTION

__all__ = ["HTTP_JOB", "SALESFORCE_BULK"]
