"""How runs are named, and what their names become in Kubernetes."""

from __future__ import annotations

import re

# Run names become Kubernetes object names (lowercased) and pod/service names with a
# "-worker-N" suffix, which must stay within 63 characters and start with a letter (DNS-1035).
RUN_NAME = re.compile(r"^[A-Za-z]([-A-Za-z0-9]{0,38}[A-Za-z0-9])?$")
RUN_NAME_RULE = "use letters, digits and '-', start with a letter, at most 40 characters"


def job_name(run: str) -> str:
    """The Kubeflow job (and ConfigMap prefix) of a run."""
    return run.lower()


def config_map_name(run: str) -> str:
    return f"{job_name(run)}-config"
