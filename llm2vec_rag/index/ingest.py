"""Find the files to index: a recursive walk with globs, .gitignore rules and hidden-file skipping.

Nothing here is fatal for one file: binary, unknown, empty, too large or
unreadable files and symlink loops are counted with a reason and reported.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LLM2VecError
from .readers import DEFAULT_EXTENSIONS


@dataclass
class Candidate:
    """A file that passed the walk's rules; it is read (and may still be skipped) later."""

    path: Path  # absolute
    rel: str  # relative to the walked root, with forward slashes
    size: int
    mtime_ns: int


@dataclass
class WalkResult:
    root: Path
    files: list[Candidate] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (path, message)
    problems: dict[str, str] = field(default_factory=dict)  # path -> reason, for files with a warning

    def skip(self, reason: str, path: str | None = None, message: str | None = None) -> None:
        self.skipped[reason] += 1
        if path is not None and message is not None:
            self.warnings.append((path, message))
            self.problems[path] = reason


# ------------------------------------------------------------------ .gitignore
def _glob_to_regex(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("(?:/.*)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            j = pattern.find("]", i + 1)
            if j == -1:
                out.append(re.escape("["))
                i += 1
            else:
                body = pattern[i + 1 : j].replace("\\", "\\\\")
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = j + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


@dataclass
class _Rule:
    base: str  # directory of the .gitignore, relative to the root ("" for the root)
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool
    anchored: bool
    prefix: str = ""  # for a .gitignore above the walked root: the root's path relative to it


def parse_gitignore(text: str, base: str = "", prefix: str = "") -> list[_Rule]:
    """The subset of gitignore syntax people use: globs, ``**``, ``!``, trailing ``/``, leading ``/``."""
    rules = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:]
        if line.startswith("\\"):
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            continue
        anchored = "/" in line
        line = line.lstrip("/")
        rules.append(_Rule(base, re.compile(_glob_to_regex(line) + r"\Z"), negate, dir_only, anchored, prefix))
    return rules


def is_ignored(rules: Sequence[_Rule], rel: str, is_dir: bool) -> bool:
    """Last matching rule wins, as in git."""
    ignored = False
    for rule in rules:
        path = f"{rule.prefix}/{rel}" if rule.prefix else rel
        if rule.base:
            if not path.startswith(rule.base + "/"):
                continue
            sub = path[len(rule.base) + 1 :]
        else:
            sub = path
        if rule.dir_only and not is_dir:
            continue
        target = sub if rule.anchored else sub.rsplit("/", 1)[-1]
        if rule.regex.match(target):
            ignored = not rule.negate
    return ignored


def ancestor_rules(root: Path) -> list[_Rule]:
    """Rules from .gitignore files above ``root``, up to the enclosing git repository's top (if any)."""
    chain = [root]
    while not (chain[-1] / ".git").exists():
        if chain[-1].parent == chain[-1]:
            return []  # not inside a git work tree: only the walked folder's own rules apply
        chain.append(chain[-1].parent)
    rules: list[_Rule] = []
    for folder in reversed(chain[1:]):
        ignore = folder / ".gitignore"
        if ignore.is_file():
            try:
                text = ignore.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            rules += parse_gitignore(text, "", root.relative_to(folder).as_posix())
    return rules


# ------------------------------------------------------------------ walking
def _matches(globs: Iterable[str], rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel, g) or fnmatch.fnmatchcase(name, g) for g in globs)


def normalise_extensions(extensions: Iterable[str] | None) -> frozenset[str]:
    if extensions is None:
        return DEFAULT_EXTENSIONS
    out = set()
    for ext in extensions:
        for part in str(ext).split(","):
            part = part.strip().lower()
            if part:
                out.add(part if part.startswith(".") else "." + part)
    return frozenset(out)


def walk(
    root: str | os.PathLike[str],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    extensions: Iterable[str] | None = None,
    max_file_mb: float = 20.0,
    hidden: bool = False,
    gitignore: bool = True,
    skip_dirs: Sequence[Path] = (),
    follow_symlinks: bool = False,
) -> WalkResult:
    """Every indexable file under ``root`` (or ``root`` itself when it is a file), sorted by path.

    Symbolic links that stay inside ``root`` are followed; links that lead out of it are
    skipped (counted as ``symlink_outside``) unless ``follow_symlinks``, as ripgrep, fd and
    git do, so a link to ``/etc/passwd`` is never served under an in-folder path.
    """
    root_path = Path(root).expanduser()
    if not root_path.exists():
        raise LLM2VecError(f"folder {root} does not exist")
    root_path = root_path.resolve()
    exts = normalise_extensions(extensions)
    limit = int(max_file_mb * 1024 * 1024)
    if root_path.is_file():
        result = WalkResult(root_path.parent)
        _consider(result, root_path, root_path.name, exts, limit, include, exclude, explicit=True)
        return result
    result = WalkResult(root_path)
    skip = {p.resolve() for p in skip_dirs if p.exists()}
    seen_dirs: set[tuple[int, int]] = set()
    stack: list[tuple[Path, str, list[_Rule]]] = [(root_path, "", ancestor_rules(root_path) if gitignore else [])]
    while stack:
        folder, rel_dir, rules = stack.pop()
        try:
            st = folder.stat()
        except OSError as exc:
            result.skip("unreadable", str(folder), f"cannot open folder: {exc.strerror or exc}")
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            result.skip("symlink_loop", str(folder), "symlink loop (folder already visited), skipped")
            continue
        seen_dirs.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            result.skip("unreadable", str(folder), f"cannot list folder: {exc.strerror or exc}")
            continue
        if gitignore and any(e.name == ".gitignore" for e in entries):
            try:  # listed but unreadable (permissions): the folder is walked without its rules, with a warning
                text = (folder / ".gitignore").read_text(encoding="utf-8", errors="replace")
                rules = [*rules, *parse_gitignore(text, rel_dir)]
            except OSError as exc:
                result.warnings.append((str(folder / ".gitignore"), f"cannot read ({exc.strerror or exc}); "
                                                                     "its rules are not applied"))
        subdirs = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if not hidden and entry.name.startswith("."):
                result.skip("hidden")
                continue
            if not follow_symlinks and entry.is_symlink() and not _inside(path, root_path):
                result.skip("symlink_outside")
                continue
            if is_dir:
                if path.resolve() in skip or (gitignore and is_ignored(rules, rel, True)) or _matches(exclude, rel):
                    result.skip("excluded")
                    continue
                subdirs.append((path, rel, rules))
                continue
            if gitignore and is_ignored(rules, rel, False):
                result.skip("excluded")
                continue
            _consider(result, path, rel, exts, limit, include, exclude)
        stack.extend(reversed(subdirs))
    result.files.sort(key=lambda c: c.rel)
    return result


def _inside(path: Path, root: Path) -> bool:
    """Where the link ``path`` leads (all links resolved) is ``root`` or below it."""
    try:
        target = path.resolve()
    except (OSError, RuntimeError):
        return False
    return target == root or root in target.parents


def _consider(result: WalkResult, path: Path, rel: str, exts: frozenset[str], limit: int,
              include: Sequence[str], exclude: Sequence[str], explicit: bool = False) -> None:
    if exclude and _matches(exclude, rel):
        result.skip("excluded")
        return
    if include and not _matches(include, rel):
        result.skip("excluded")
        return
    if path.suffix.lower() not in exts and not (explicit and not path.suffix):
        result.skip("unsupported")
        return
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            result.skip("unreadable", str(path), "broken symlink, skipped")
        else:
            result.skip("vanished", str(path), "file vanished while indexing, skipped")
        return
    except OSError as exc:
        message = "symlink loop, skipped" if "symbolic links" in str(exc) else f"cannot stat: {exc.strerror or exc}"
        result.skip("symlink_loop" if "symbolic links" in str(exc) else "unreadable", str(path), message)
        return
    if not stat.S_ISREG(st.st_mode):
        result.skip("unsupported")
        return
    if st.st_size == 0:
        result.skip("empty", str(path), "zero-byte file, skipped")
        return
    if st.st_size > limit:
        result.skip("too_large", str(path),
                    f"{st.st_size / 1e6:.1f} MB is larger than --max-file-mb {limit / 1024 / 1024:g}, skipped")
        return
    result.files.append(Candidate(path, rel, st.st_size, st.st_mtime_ns))


# ------------------------------------------------------------------ paths and reading
def path_key(path: str) -> str:
    """How a path is stored: itself when it is valid UTF-8 (every normal path, stored as before);
    else (undecodable bytes, which Python holds as surrogate escapes) its bytes with each
    undecodable byte and each backslash written ``\\xNN``, which :func:`key_to_path` reverses.

    (A valid UTF-8 name that literally reads like such a key could share its row; none is made
    by any tool we know.)
    """
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).replace(b"\\", b"\\x5c").decode("utf-8", "backslashreplace")


def key_to_path(key: str) -> str:
    """The path a :func:`path_key` names (exact for the key of every non-UTF-8 path)."""
    if "\\x" not in key:
        return key
    raw = re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]), key.encode("utf-8"))
    try:
        raw.decode("utf-8")
        return key  # decodes cleanly: the key of a valid UTF-8 path, stored as it is
    except UnicodeDecodeError:
        return os.fsdecode(raw)


def display_path(path: str) -> str:
    """A path as it is shown and returned in results: undecodable bytes become U+FFFD."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "replace")


def valid_text(text: str) -> str:
    """``text`` with lone surrogates (undecodable bytes of argv or a file name) as U+FFFD: the
    tokenizers and SQLite take only valid Unicode."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


class NotRegularFileError(OSError):
    """The path is (now) a FIFO, socket, device or folder: reading it could block or never end."""


def read_regular_file(path: Path) -> bytes:
    """The bytes of a regular file; never blocks on a FIFO swapped in after the walk (``O_NONBLOCK``,
    then the type is checked on the opened descriptor)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        chunks = []
        while True:
            block = os.read(fd, 1 << 20)
            if not block:
                break
            chunks.append(block)
        return b"".join(chunks)
    finally:
        os.close(fd)


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]
