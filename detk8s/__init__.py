"""detk8s: object-detection training runs as Kubeflow jobs."""

__version__ = "0.1.0"
