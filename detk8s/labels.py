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
