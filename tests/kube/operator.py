"""The Kubeflow Training Operator (v1.9) on the paths a failing job takes, as a small state
machine over the emulator's objects. The test steps it; each step applies the operator's rules:

- reconcile (common/job.go ReconcileJobs): a job past its backoff limit or its
  activeDeadlineSeconds fails: every pod and service is deleted first, whatever cleanPodPolicy
  says, then the job gets Failed (reason <Kind>Failed, message "Job <name> has failed because it
  has reached the specified backoff limit" / "... was active longer than specified deadline")
  and a Normal event with that message. Otherwise each replica without a pod gets one, under the
  name <job>-<type>-<index> and with a new UID: a deleted or evicted pod comes back.
- the backoff limit (core/job.go PastBackoffLimit) counts the container and init-container
  restarts of Running pods of OnFailure/Always/ExitCode replicas: >= backoffLimit (> 0 for 0).
- a container that exits non-zero under OnFailure is restarted in place by the kubelet:
  restartCount + 1, its termination kept as lastState, CrashLoopBackOff until it runs again.
- PyTorchJob workers wait in an `init-pytorch` init container until the master is up
  (pytorch/initcontainer.go).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from kube.emulator import JSON, LABEL_JOB, KubeEmulator, now

REPLICA_SPECS = {"paddlejobs": "paddleReplicaSpecs", "pytorchjobs": "pytorchReplicaSpecs"}
BACKOFF = "Job {} has failed because it has reached the specified backoff limit"
DEADLINE = "Job {} has failed because it was active longer than specified deadline"
COUNTED = ("OnFailure", "Always", "ExitCode")


@dataclass
class Operator:
    kube: KubeEmulator
    namespace: str
    plural: str = "paddlejobs"

    def job(self, name: str) -> JSON:
        job = self.kube.get(self.plural, self.namespace, name)
        assert job is not None, f"{self.plural}/{name} does not exist"
        return job

    def replicas(self, job: JSON) -> list[tuple[str, int, str]]:
        """(type, index, restartPolicy) of every replica the job asks for."""
        specs = job["spec"][REPLICA_SPECS[self.plural]]
        return [
            (rtype.lower(), i, spec.get("restartPolicy", "Never"))
            for rtype, spec in specs.items()
            for i in range(spec.get("replicas", 1))
        ]

    def pods(self, name: str) -> list[JSON]:
        return self.kube.list("pods", self.namespace, f"{LABEL_JOB}={name}")

    def failed(self, job: JSON) -> bool:
        conds = (job.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Failed" and c["status"] == "True" for c in conds)

    # -- the reconcile loop --------------------------------------------------------------------

    def reconcile(self, name: str) -> None:
        job = self.job(name)
        if self.failed(job):
            return
        pods = self.pods(name)
        if self._past_backoff_limit(job, pods):
            return self._fail(job, pods, BACKOFF.format(name))
        if self._past_deadline(job):
            return self._fail(job, pods, DEADLINE.format(name))
        have = {p["metadata"]["name"] for p in pods}
        master_up = any(p["status"]["phase"] == "Running" for p in pods
                        if p["metadata"]["name"].endswith("-master-0"))  # fmt: skip
        for rtype, index, _ in self.replicas(job):
            if f"{name}-{rtype}-{index}" in have:
                continue
            if self.plural == "pytorchjobs" and rtype == "worker" and not master_up:
                self._add_waiting_worker(name, index)
            else:
                self.kube.add_pod(self.namespace, name, rtype, index, kind=self.plural)
            self._add_service(name, f"{name}-{rtype}-{index}")
        if not (job.get("status") or {}).get("conditions"):
            self.kube.set_job_condition(self.plural, self.namespace, name, "Created")
        self.kube.set_job_condition(self.plural, self.namespace, name, "Running")

    def _past_backoff_limit(self, job: JSON, pods: list[JSON]) -> bool:
        limit = job["spec"].get("runPolicy", {}).get("backoffLimit")
        if limit is None:
            return False
        counted = {f"{job['metadata']['name']}-{t}-{i}" for t, i, policy in self.replicas(job)
                   if policy in COUNTED}  # fmt: skip
        total = sum(
            s.get("restartCount", 0)
            for p in pods
            if p["metadata"]["name"] in counted and p["status"].get("phase") == "Running"
            for s in [*p["status"].get("initContainerStatuses", []),
                      *p["status"].get("containerStatuses", [])]
        )  # fmt: skip
        return total > 0 if limit == 0 else total >= limit

    def _past_deadline(self, job: JSON) -> bool:
        deadline = job["spec"].get("runPolicy", {}).get("activeDeadlineSeconds")
        start = (job.get("status") or {}).get("startTime")
        if deadline is None or start is None:
            return False
        started = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
        return (dt.datetime.now(dt.timezone.utc) - started).total_seconds() >= deadline

    def _fail(self, job: JSON, pods: list[JSON], message: str) -> None:
        name = job["metadata"]["name"]
        for pod in pods:  # not yet finished: cleanPodPolicy does not apply
            self.kube.delete("pods", self.namespace, pod["metadata"]["name"])
            if self.kube.get("services", self.namespace, pod["metadata"]["name"]) is not None:
                self.kube.delete("services", self.namespace, pod["metadata"]["name"])
        kind = self.kube.spec(self.plural).kind
        self.kube.add_event(self.namespace, name, f"{kind}Failed", message, "Normal",
                            kind=kind, component=f"{kind.lower()}-controller")  # fmt: skip
        self.kube.set_job_condition(self.plural, self.namespace, name, "Failed",
                                    f"{kind}Failed", message)  # fmt: skip

    def _add_service(self, job: str, pod: str) -> None:
        if self.kube.get("services", self.namespace, pod) is None:
            owner = self.job(job)
            self.kube.create("services", self.namespace, {
                "metadata": {"name": pod, "namespace": self.namespace,
                             "labels": {LABEL_JOB: job},
                             "ownerReferences": [{"apiVersion": "kubeflow.org/v1",
                                                  "kind": self.kube.spec(self.plural).kind,
                                                  "name": job, "uid": owner["metadata"]["uid"],
                                                  "controller": True}]},
                "spec": {"clusterIP": "None", "selector": {LABEL_JOB: job}},
            })  # fmt: skip

    def _add_waiting_worker(self, job: str, index: int) -> None:
        pod = self.kube.add_pod(self.namespace, job, "worker", index, kind=self.plural,
                                phase="Pending", waiting_reason="PodInitializing")  # fmt: skip
        init = {
            "name": "init-pytorch",
            "restartCount": 0,
            "ready": False,
            "image": "alpine:3.10",
            "imageID": "",
            "state": {"running": {"startedAt": now()}},
        }
        self.kube.patch("pods", self.namespace, pod["metadata"]["name"],
                        {"spec": {"initContainers": [{"name": "init-pytorch",
                                                      "image": "alpine:3.10"}]}})  # fmt: skip
        self.kube.patch("pods", self.namespace, pod["metadata"]["name"],
                        {"status": {"initContainerStatuses": [init]}},
                        subresource="status")  # fmt: skip

    # -- what happens to pods ------------------------------------------------------------------

    def crash(self, pod: str, exit_code: int = 1, reason: str = "Error") -> None:
        """The training container exits non-zero and, under OnFailure, restarts in place."""
        status = self._container(pod)
        self.kube.call(self.kube.api.restart_container, self.namespace, pod, status["name"])
        self._set_container(pod, {
            **status,
            "restartCount": status.get("restartCount", 0) + 1,
            "ready": False,
            "started": False,
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                                  "message": f"back-off restarting failed container "
                                             f"{status['name']} in pod {pod}"}},
            "lastState": {"terminated": {"exitCode": exit_code, "reason": reason,
                                         "finishedAt": now()}},
        })  # fmt: skip
        job = self.kube.get("pods", self.namespace, pod)
        assert job is not None
        self.reconcile(job["metadata"]["labels"][LABEL_JOB])

    def run_again(self, pod: str) -> None:
        """The restarted container runs (the back-off is over)."""
        self._set_container(pod, {**self._container(pod), "ready": True, "started": True,
                                  "state": {"running": {"startedAt": now()}}})  # fmt: skip

    def _container(self, pod: str) -> JSON:
        obj = self.kube.get("pods", self.namespace, pod)
        assert obj is not None, f"pod {pod} does not exist"
        (status,) = obj["status"]["containerStatuses"]
        status_: JSON = status
        return status_

    def _set_container(self, pod: str, status: JSON) -> None:
        self.kube.patch(
            "pods",
            self.namespace,
            pod,
            {"status": {"containerStatuses": [status]}},
            subresource="status",
        )

    def evict(self, pod: str) -> None:
        """The pod is deleted (eviction, preemption, kubectl delete): the operator makes it
        again under the same name."""
        obj = self.kube.delete("pods", self.namespace, pod)
        self.kube.delete("services", self.namespace, pod)
        self.reconcile(obj["metadata"]["labels"][LABEL_JOB])

    def pass_deadline(self, name: str) -> None:
        """activeDeadlineSeconds runs out."""
        job = self.job(name)
        seconds = job["spec"].get("runPolicy", {}).get("activeDeadlineSeconds", 0)
        start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds + 1)
        self.kube.patch(self.plural, self.namespace, name,
                        {"status": {"startTime": start.strftime("%Y-%m-%dT%H:%M:%SZ")}},
                        subresource="status")  # fmt: skip
        self.reconcile(name)

    def log(self, pod: str, text: str) -> None:
        self.kube.append_pod_log(self.namespace, pod, text)

    def uid(self, pod: str) -> Any:
        obj = self.kube.get("pods", self.namespace, pod)
        return None if obj is None else obj["metadata"]["uid"]
