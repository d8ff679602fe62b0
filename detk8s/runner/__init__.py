"""`detk8s exec`: what runs inside the training pod (or as the local backend's process).

Prepare the data, train through the framework adapter with checkpoints mirrored to storage
(and resumed from there after a restart), evaluate, and store the results, DONE last.
"""
