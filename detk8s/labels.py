"""Label keys detk8s puts on what it creates, and the Training Operator's pod labels."""

RUN_LABEL = "detk8s.io/run"
SPEC_HASH_LABEL = "detk8s.io/spec-hash"
FRAMEWORK_LABEL = "detk8s.io/framework"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"

# Set by the Kubeflow Training Operator on every pod of a job.
OP_JOB_NAME = "training.kubeflow.org/job-name"
OP_REPLICA_TYPE = "training.kubeflow.org/replica-type"  # lowercase: master, worker
OP_REPLICA_INDEX = "training.kubeflow.org/replica-index"
OP_JOB_ROLE = "training.kubeflow.org/job-role"

# Set by JobSet (Kubeflow Trainer v2 runs a TrainJob as a JobSet of its name) and by the Job
# controller on every pod of an Indexed Job (label and annotation).
JOBSET_NAME = "jobset.sigs.k8s.io/jobset-name"
JOBSET_REPLICATED_JOB = "jobset.sigs.k8s.io/replicatedjob-name"
JOBSET_RESTART_ATTEMPT = "jobset.sigs.k8s.io/restart-attempt"
JOB_COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
# Trainer v2: the runtime's framework (the SDK reads it), and a job template's role in it.
TRAINER_FRAMEWORK_LABEL = "trainer.kubeflow.org/framework"
TRAINER_ANCESTOR_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"

# Kueue: the LocalQueue a job is queued in (the job is created suspended; Kueue admits it).
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# A service mesh sidecar never exits, so a pod with one never finishes: off unless asked for.
ISTIO_INJECT_ANNOTATION = "sidecar.istio.io/inject"
# Prefixes of labels and annotations others own: a run may not set them.
RESERVED_PREFIXES = ("detk8s.io/", "training.kubeflow.org/", "kueue.x-k8s.io/", "volcano.sh/",
                     "scheduling.k8s.io/", "trainer.kubeflow.org/", "jobset.sigs.k8s.io/",
                     "batch.kubernetes.io/")  # fmt: skip
