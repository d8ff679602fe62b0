"""Backends turn a JobSpec into a running job: Kubernetes (Kubeflow jobs) or a local process."""
