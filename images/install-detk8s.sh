#!/bin/sh
# The last layer of every training image (../Dockerfile): detk8s from the wheel the build context
# carries (its dependencies are in the base already), and its package at /opt/detk8s/detk8s,
# where the pods' commands find the worker scripts.
set -eu
pip install --no-deps /opt/detk8s/wheels/detk8s-*.whl
package="$(python -c 'import detk8s, os; print(os.path.dirname(detk8s.__file__))')"
ln -s "$package" /opt/detk8s/detk8s
detk8s --help >/dev/null
