"""Kubeflow Trainer v2.3 (and the JobSet and Job controllers under it) on the paths detk8s reads,
as the test steps it: a TrainJob's pods as JobSet creates them (`<job>-node-0-<index>-<random>`,
with JobSet's labels, the completion index as label and annotation, the restart attempt), its
jobsStatus while they run, and its Complete / Failed condition (pkg/controller/
trainjob_controller.go: JobSet's reason and message)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from kube.emulator import JSON, KubeEmulator, now

JOBSET_NAME = "jobset.sigs.k8s.io/jobset-name"
REPLICATED_JOB = "jobset.sigs.k8s.io/replicatedjob-name"
JOB_INDEX = "jobset.sigs.k8s.io/job-index"
ATTEMPT = "jobset.sigs.k8s.io/restart-attempt"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
PLURAL = "trainjobs"


@dataclass
class Trainer:
    kube: KubeEmulator
    namespace: str

    def job(self, name: str) -> JSON:
        job = self.kube.get(PLURAL, self.namespace, name)
        assert job is not None, f"trainjobs/{name} does not exist"
        return job

    def start(self, name: str, attempt: int = 0, **pod: Any) -> list[JSON]:
        """The pods of restart attempt `attempt` of the trainer job, one per node."""
        nodes = self.job(name)["spec"]["trainer"].get("numNodes", 1)
        pods = []
        for i in range(nodes):
            index = {COMPLETION_INDEX: str(i)}
            labels = {JOBSET_NAME: name, REPLICATED_JOB: "node", JOB_INDEX: "0",
                      ATTEMPT: str(attempt), **index}  # fmt: skip
            pods.append(self.kube.add_pod(
                self.namespace, name, "node", i, kind=PLURAL, labels=labels, annotations=index,
                name=f"{name}-node-0-{i}-{secrets.token_hex(3)[:5]}", **pod,
            ))  # fmt: skip
        counts = {"active": nodes, "ready": nodes, "succeeded": 0, "failed": 0, "suspended": 0}
        self._status(name, {"jobsStatus": [{"name": "node", **counts}]})
        return pods

    def finish(self, name: str, failed: str | None = None, message: str = "") -> None:
        """Complete (JobSet's AllJobsCompleted), or Failed with JobSet's reason."""
        kind, reason = ("Failed", failed) if failed else ("Complete", "AllJobsCompleted")
        cond = {"type": kind, "status": "True", "reason": reason,
                "message": message or "jobset completed successfully",
                "lastTransitionTime": now()}  # fmt: skip
        conds = [*(self.job(name).get("status") or {}).get("conditions", []), cond]
        self._status(name, {"conditions": conds})

    def _status(self, name: str, status: JSON) -> None:
        self.kube.patch(PLURAL, self.namespace, name, {"status": status}, subresource="status")
