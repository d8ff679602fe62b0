"""`detk8s build`: images tagged by the hash of what goes into them, built only when missing.

context.py says what goes in (and the tag); builders.py runs docker/podman; registry.py asks a
registry whether a tag is there; kaniko.py renders the in-cluster build Job.
"""
