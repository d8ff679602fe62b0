"""The Kubernetes backend: Kubeflow Training Operator jobs rendered from k8s_templates/."""
