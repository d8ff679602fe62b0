"""The names of the environment variables a training pod sees: those detk8s renders, and those
the Kubeflow Training Operator (v1.9, pkg/controller.v1/*/envvar.go) appends to each replica."""

# Rendered by detk8s.
STORAGE = "DETK8S_STORAGE"  # where results go
IMAGE = "DETK8S_IMAGE"  # the image the pod runs, recorded in eval.json
REPLICA_TYPE = "DETK8S_REPLICA_TYPE"  # from the operator's replica-type label (downward API)
REPLICA_INDEX = "DETK8S_REPLICA_INDEX"  # from its replica-index label
RANK0_REPLICA = "DETK8S_RANK0_REPLICA"  # the replica type whose index 0 is rank 0
# Set by detk8s's Paddle runtime for Trainer v2 (k8s_templates/clustertrainingruntime.yaml.j2).
JOBSET = "DETK8S_JOBSET"  # the pod's JobSet (the TrainJob's name)
POD_IP = "DETK8S_POD_IP"  # rank 0 listens on it: paddle's master binds its own address
# Tuning knobs `detk8s exec` reads (seconds).
CHECKPOINT_INTERVAL = "DETK8S_CHECKPOINT_INTERVAL"
LOG_INTERVAL = "DETK8S_LOG_INTERVAL"
TERM_GRACE = "DETK8S_TERM_GRACE"
OURS = "DETK8S_"  # every name detk8s sets or reads starts so

# Object storage, as boto3 reads them; the keys come from a Secret.
AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"
AWS_DEFAULT_REGION = "AWS_DEFAULT_REGION"
AWS_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")

# PaddleJob (collective mode): paddle.distributed.launch reads these as --master/--nnodes/--job_id.
PADDLE_MASTER = "PADDLE_MASTER"  # "$(POD_IP_DUMMY):port" on worker-0, "<job>-worker-0:port" else
PADDLE_NNODES = "PADDLE_NNODES"
PADDLE_JOB_ID = "PADDLE_JOB_ID"
POD_IP_DUMMY = "POD_IP_DUMMY"

# PyTorchJob: node-level values for torchrun (PET_*) and for plain torch.distributed.
MASTER_ADDR = "MASTER_ADDR"
MASTER_PORT = "MASTER_PORT"
WORLD_SIZE = "WORLD_SIZE"
RANK = "RANK"
PET_NNODES = "PET_NNODES"
PET_NODE_RANK = "PET_NODE_RANK"
PET_NPROC_PER_NODE = "PET_NPROC_PER_NODE"
PET_MASTER_ADDR = "PET_MASTER_ADDR"
PET_MASTER_PORT = "PET_MASTER_PORT"
# torch.distributed's per-process values: a single-process trainer must not inherit them.
TORCH_PROCESS_ENV = (RANK, WORLD_SIZE, "LOCAL_RANK", "LOCAL_WORLD_SIZE", MASTER_ADDR, MASTER_PORT)

# What the operator appends after the template's env, silently replacing a run's value of the
# same name (PYTHONUNBUFFERED it sets to 1 for every kind).
OPERATOR_OWNED = (
    PADDLE_MASTER, PADDLE_NNODES, PADDLE_JOB_ID, POD_IP_DUMMY, "PADDLE_SERVER_NUM",
    "PADDLE_TRAINER_NUM", MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, "PYTHONUNBUFFERED",
)  # fmt: skip
OPERATOR_OWNED_PREFIXES = ("PET_",)  # torchrun's: PET_NNODES, PET_NODE_RANK, PET_RDZV_*, ...


def owner_of(name: str) -> str | None:
    """Who sets env var `name` in a training pod besides the run: the operator, or detk8s."""
    if name in OPERATOR_OWNED or name.startswith(OPERATOR_OWNED_PREFIXES):
        return "the Training Operator"
    if name.startswith(OURS):
        return "detk8s"
    return None
