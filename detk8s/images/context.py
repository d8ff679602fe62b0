"""What goes into an image, and the content tag that names it.

The tag hashes the Dockerfile, the build args and every build-context file the Dockerfile's
COPY/ADD instructions take, minus what .dockerignore excludes. Paths are context-relative and
mtimes are left out, so the same inputs give the same tag on any machine. This runs on every
`render` (for `image: auto`), so it is stdlib only and reads just the files the image copies.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import stat
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from detk8s.errors import DetkError

TAG_LENGTH = 16
# Bump when what the hash covers changes, so old and new tags never collide.
HASH_SCHEME = b"detk8s-image-tag/2"
IGNORE_FILE = ".dockerignore"
WILDCARDS = re.compile(r"[*?\[]")
RACY_NS = 2_000_000_000
_DIGESTS: dict[tuple[str, int, int, int, int], bytes] = {}
_IGNORES: dict[str, DockerIgnore] = {}


class ContextError(DetkError):
    pass


class DockerIgnore:
    """.dockerignore as Docker reads it (moby's patternmatcher), which is not gitignore: patterns
    are anchored at the context root, `*` stays within one path segment, `**` spans any number,
    a pattern matching a directory excludes everything in it, `!` re-includes, last match wins."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.patterns: list[tuple[re.Pattern[str], bool, str]] = []
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            line = line[1:].strip() if exclusion else line
            if not line:
                continue
            line = posixpath.normpath(line)
            if len(line) > 1 and line.startswith("/"):
                line = line.lstrip("/")
            self.patterns.append((_pattern_regex(line), exclusion, line))
        self._exceptions = [p for _, exc, p in self.patterns if exc]
        self._memo: dict[str, bool] = {}

    @classmethod
    def of(cls, context: Path) -> DockerIgnore:
        try:
            text = (context / IGNORE_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        if text not in _IGNORES:  # parsed once per process: a render hashes once per run
            _IGNORES[text] = cls(text.splitlines())
        return _IGNORES[text]

    def excluded(self, rel: str) -> bool:
        hit = self._memo.get(rel)
        if hit is None:
            hit = self._memo[rel] = self._excluded(rel)
        return hit

    def _excluded(self, rel: str) -> bool:
        matched = False
        parent = posixpath.dirname(rel)
        dirs = parent.split("/") if parent else []
        for regex, exclusion, _ in self.patterns:
            if exclusion != matched:  # only an exception can undo a match, and vice versa
                continue
            hit = regex.match(rel) is not None or any(
                regex.match("/".join(dirs[: i + 1])) for i in range(len(dirs))
            )
            if hit:
                matched = not exclusion
        return matched

    def prunes(self, rel_dir: str) -> bool:
        """Nothing under `rel_dir` can be in the context: excluded, and no `!` reaches inside."""
        if not self.excluded(rel_dir):
            return False
        for pattern in self._exceptions:
            literal = WILDCARDS.split(pattern, 1)[0]
            if WILDCARDS.search(pattern) and "/" not in literal:
                return False  # a wildcard at the top level may match anything
            if literal.startswith(rel_dir + "/") or (rel_dir + "/").startswith(literal):
                return False
        return True


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Go filepath.Match syntax plus `**`, translated as moby's patternmatcher does."""
    out, i = ["^"], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i + 1 : i + 2] == "*":
                i += 1
                if pattern[i + 1 : i + 2] == "/":
                    i += 1
                out.append(".*" if i + 1 >= len(pattern) else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            out.append("[" + pattern[i + 1 : end].replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + "$")


def logical_lines(text: str) -> list[str]:
    """Dockerfile instructions, one string each: continuations joined, comments dropped."""
    escape = "\\"
    directive = re.match(r"\s*#\s*escape\s*=\s*(\S)", text)
    if directive:
        escape = directive.group(1)
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and current):
            continue
        if stripped.endswith(escape):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def copy_sources(dockerfile_text: str) -> list[str] | None:
    """Context paths the Dockerfile reads (COPY/ADD sources, bind mounts), or None when it reads
    something this cannot pin down (a $VARIABLE source, a bind mount of the context): then the
    whole context counts."""
    sources: list[str] = []
    for line in logical_lines(dockerfile_text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "RUN":
            for mount in re.findall(r"--mount=(\S+)", rest):
                opts = dict(kv.partition("=")[::2] for kv in mount.split(","))
                if opts.get("type", "bind") == "bind" and "from" not in opts:
                    return None
        if keyword not in ("COPY", "ADD"):
            continue
        args = rest.split()
        flags = [a for a in args if a.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue  # from another stage or image, not the context
        args = args[len(flags) :]
        if args and args[0].startswith("["):
            args = json.loads(" ".join(args))
        for src in args[:-1]:
            if src.startswith("<<") or "://" in src or src.startswith("git@"):
                continue  # heredoc or remote source
            if "$" in src:
                return None
            sources.append(src)
    return sources


def context_files(context: Path, sources: list[str] | None, ignore: DockerIgnore) -> list[str]:
    """The context-relative paths of the files those sources take, sorted."""
    found: set[str] = set()
    roots = ["."] if sources is None else sources
    for src in roots:
        src = posixpath.normpath(src.lstrip("/")) if src.strip("/") else "."
        if src == "." or src.startswith("../"):
            _walk(context, "", ignore, found)
            continue
        wildcard = WILDCARDS.search(src)
        if wildcard:
            literal = src[: wildcard.start()].rpartition("/")[0]  # the dir above the first wildcard
            glob = _pattern_regex(src)
            below: set[str] = set()
            _walk(context, literal, ignore, below)
            found |= {f for f in below if _matches_or_parent(glob, f)}
            continue
        path = context / src
        if path.is_dir() and not path.is_symlink():
            _walk(context, src, ignore, found)
        elif os.path.lexists(path) and not ignore.excluded(src):
            found.add(src)
    return sorted(found)


def _matches_or_parent(regex: re.Pattern[str], rel: str) -> bool:
    parts = rel.split("/")
    return any(regex.match("/".join(parts[: i + 1])) for i in range(len(parts)))


def _walk(context: Path, rel_dir: str, ignore: DockerIgnore, out: set[str]) -> None:
    if rel_dir and ignore.prunes(rel_dir):
        return
    try:
        entries = list(os.scandir(context / rel_dir if rel_dir else context))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
        if entry.is_dir(follow_symlinks=False):
            _walk(context, rel, ignore, out)
        elif not ignore.excluded(rel):
            out.add(rel)


def content_hash(
    dockerfile: bytes, build_args: Mapping[str, str], target: str | None, files: Mapping[str, bytes]
) -> str:
    """The tag: a hash of the Dockerfile, the build args, the target and the digest of every
    file the image copies, by its path in the context."""
    h = hashlib.sha256(HASH_SCHEME)
    h.update(b"\0dockerfile\0%d\0" % len(dockerfile) + dockerfile)
    for key, value in sorted(build_args.items()):
        h.update(f"\0arg\0{key}\0{value}".encode())
    if target:
        h.update(f"\0target\0{target}".encode())
    for rel, digest in sorted(files.items()):
        h.update(f"\0file\0{rel}\0".encode() + digest)
    return h.hexdigest()[:TAG_LENGTH]


def directory_files(context: Path, dockerfile_text: str) -> dict[str, Path]:
    """The files of a directory context the Dockerfile copies, by context path."""
    context = context.resolve()
    if not context.is_dir():
        raise ContextError(f"build context {context} is not a directory")
    ignore = DockerIgnore.of(context)
    return {rel: context / rel for rel in context_files(context, copy_sources(dockerfile_text),
                                                        ignore)}  # fmt: skip


def file_digest(path: Path) -> bytes:
    return _file_digest(path)


def _file_digest(path: Path) -> bytes:
    """Content and what COPY keeps of the mode (the executable bit; a link's target). Cached
    by stat within the process, as git does: a render of many runs reads each file once."""
    st = os.lstat(path)
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)
    digest = _DIGESTS.get(key)
    if digest is not None:
        return digest
    if stat.S_ISLNK(st.st_mode):
        digest = b"link\0" + os.readlink(path).encode()
    else:
        kind = b"exec\0" if st.st_mode & 0o111 else b"file\0"
        digest = kind + hashlib.sha256(path.read_bytes()).digest()
    # A file modified within the mtime granularity could change again unseen: not cached.
    if time.time_ns() - st.st_mtime_ns > RACY_NS:
        _DIGESTS[key] = digest
    return digest
