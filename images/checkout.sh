#!/bin/sh
# checkout.sh NAME URL COMMIT: a trainer's code at COMMIT in /opt/trainers/NAME. An empty COMMIT
# skips it. What the code imports is in requirements-pytorch.txt (installed before).
set -eu
name="$1" url="$2" commit="$3"
[ -n "$commit" ] || exit 0
git init -q "/opt/trainers/$name"
cd "/opt/trainers/$name"
git fetch -q --depth 1 "$url" "$commit"
git checkout -q FETCH_HEAD
rm -rf .git
