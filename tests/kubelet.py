"""The kubelet's `$(VAR)` expansion of a container's command, args and env values, as in
kubernetes/third_party/forked/golang/expansion/expand.go: `$$` is a literal `$`, `$(NAME)` the
value of an env var defined before it (or left as written when undefined), any other `$` as is."""

from __future__ import annotations

from typing import Any


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] != "$" or i + 1 == len(text):
            out.append(text[i])
            i += 1
        elif text[i + 1] == "$":
            out.append("$")
            i += 2
        elif text[i + 1] == "(" and ")" in text[i + 2 :]:
            end = text.index(")", i + 2)
            name = text[i + 2 : end]
            out.append(env.get(name, f"$({name})"))
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def container_as_started(container: dict[str, Any], injected: dict[str, str]) -> dict[str, Any]:
    """The command and env a container's process gets: each env value expanded with those
    before it (and `injected`, e.g. the Secrets' values), then the command with all of them."""
    env: dict[str, str] = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = kubelet_expand(e["value"], {**injected, **env})
        elif e["name"] in injected:
            env[e["name"]] = injected[e["name"]]
    env = {**injected, **env}
    command = [kubelet_expand(a, env) for a in container["command"]]
    return {"command": command, "env": env}
