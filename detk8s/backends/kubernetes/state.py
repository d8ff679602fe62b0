"""Reading a Kubeflow job's state the way the operator writes it."""

from __future__ import annotations

from typing import Any

from detk8s.backends.kubernetes.kinds import KINDS, TRAINJOB
from detk8s.labels import KUEUE_QUEUE_LABEL

TERMINAL = ("Succeeded", "Failed")


def last_condition(job: dict[str, Any]) -> dict[str, Any] | None:
    """The newest condition whose status is True (the operator keeps older ones, set False)."""
    conditions = [c for c in (job.get("status") or {}).get("conditions") or []
                  if c.get("status") == "True"]  # fmt: skip
    return conditions[-1] if conditions else None


QUEUED = "Queued"  # suspended by us for Kueue, and not admitted yet


# A TrainJob's conditions (Trainer v2) in the v1 operator's words.
_TRAINJOB_STATES = {"Complete": "Succeeded", "Failed": "Failed", "Suspended": "Suspended"}


def job_state(job: dict[str, Any]) -> str:
    """Created, Running, Restarting, Succeeded, Failed, Suspended; Pending before any; Queued
    while Kueue has not admitted it (it is still suspended, with its queue label). A TrainJob
    has only Complete, Failed and Suspended: before those it is Running once a child Job has
    active pods, else Created."""
    cond = last_condition(job)
    if job.get("kind") == TRAINJOB:
        state = _TRAINJOB_STATES.get(str(cond["type"])) if cond else None
        if state is None:
            jobs = (job.get("status") or {}).get("jobsStatus") or []
            state = "Running" if any(j.get("active") for j in jobs) else "Created"
    else:
        state = str(cond["type"]) if cond else "Pending"
    if state in ("Pending", "Created", "Suspended") and queued_in_kueue(job):
        return QUEUED
    return state


def queued_in_kueue(job: dict[str, Any]) -> bool:
    labels = (job.get("metadata") or {}).get("labels") or {}
    kind = KINDS.get(str(job.get("kind")))
    suspended: Any = job.get("spec") or {}
    for key in kind.suspend_path if kind else ():
        suspended = (suspended or {}).get(key)
    return KUEUE_QUEUE_LABEL in labels and bool(kind and suspended)


def is_terminal(job: dict[str, Any]) -> bool:
    return job_state(job) in TERMINAL


def condition_reason(job: dict[str, Any]) -> str | None:
    """`reason: message` of a Failed or Restarting job: why the operator gave up or restarted."""
    cond = last_condition(job)
    if cond is None or cond.get("type") not in ("Failed", "Restarting"):
        return None
    return f"{cond.get('reason', '')}: {cond.get('message', '')}".strip(": ")
