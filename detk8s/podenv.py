"""The names of the environment variables a training pod sees: those detk8s renders, and those
the Kubeflow Training Operator (v1.9, pkg/controller.v1/*/envvar.go) appends to each replica."""

# Rendered by detk8s.
STORAGE = "DETK8S_STORAGE"  # where results go
IMAGE = "DETK8S_IMAGE"  # the image the pod runs, recorded in eval.json
REPLICA_TYPE = "DETK8S_REPLICA_TYPE"  # from the operator's replica-type label (downward API)
REPLICA_INDEX = "DETK8S_REPLICA_INDEX"  # from its replica-index label
RANK0_REPLICA = "DETK8S_RANK0_REPLICA"  # the replica type whose index 0 is rank 0
# Tuning knobs `detk8s exec` reads (seconds).
CHECKPOINT_INTERVAL = "DETK8S_CHECKPOINT_INTERVAL"
TERM_GRACE = "DETK8S_TERM_GRACE"

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
