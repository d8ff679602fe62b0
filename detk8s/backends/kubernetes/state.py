"""Reading a Kubeflow job's state the way the operator writes it."""

from __future__ import annotations

from typing import Any

TERMINAL = ("Succeeded", "Failed")


def last_condition(job: dict[str, Any]) -> dict[str, Any] | None:
    """The newest condition whose status is True (the operator keeps older ones, set False)."""
    conditions = [c for c in (job.get("status") or {}).get("conditions") or []
                  if c.get("status") == "True"]  # fmt: skip
    return conditions[-1] if conditions else None


def job_state(job: dict[str, Any]) -> str:
    """Created, Running, Restarting, Succeeded, Failed, Suspended; Pending before any."""
    cond = last_condition(job)
    return str(cond["type"]) if cond else "Pending"


def is_terminal(job: dict[str, Any]) -> bool:
    return job_state(job) in TERMINAL


def condition_reason(job: dict[str, Any]) -> str | None:
    """`reason: message` of a Failed or Restarting job: why the operator gave up or restarted."""
    cond = last_condition(job)
    if cond is None or cond.get("type") not in ("Failed", "Restarting"):
        return None
    return f"{cond.get('reason', '')}: {cond.get('message', '')}".strip(": ")
