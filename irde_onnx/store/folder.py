"""The router folder on disk: generations committed by ``router.json``, the lock, cleanup.

A save writes the graph and the statistics under new file names (``router.<hash>.onnx``,
``stats.<hash>.npz``: named by a prefix of their sha256, so a file is never rewritten once
written), then replaces ``router.json`` with one rename. ``router.json`` names both files
with their sha256, so a reader that reads ``router.json`` first always finds one complete
generation. ``router.onnx.data`` (the encoder) and ``tokenizer.json`` keep their names and are
never rewritten. Files of older generations and temporaries of interrupted saves are removed
only by a process holding the folder lock (``.irde.lock``), which every save holds from its
first write to its commit: so a file a running save is about to commit is never removed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from filelock import FileLock, Timeout

from irde_onnx.errors import (
    InvalidInputError,
    IrdeError,
    RouterBusyError,
    RouterChangedError,
    RouterFileError,
    RouterFormatError,
)
from irde_onnx.store.config import (
    CONFIG_FILE,
    DATA_FILE,
    FILE_ROLES,
    FIXED_FILES,
    FORMAT_VERSION,
    GRAPH_FILE,
    STATS_FILE,
    TOKENIZER_FILE,
    RouterConfig,
    check_router_dir,
    sha256_file,
)

T = TypeVar("T")

LOCK_FILE = ".irde.lock"
LOCK_TIMEOUT = 600.0
# The steps of a save, in order; :func:`set_save_hook` observes them (crash tests).
SAVE_STEPS = ("graph", "stats", "manifest", "commit", "cleanup")
_GENERATION = re.compile(r"(router\.[0-9a-f]{8,64}\.onnx|stats\.[0-9a-f]{8,64}\.npz)")
# temporaries: this module's ``.<name>.<random>.tmp`` and the ``.<name>.<random>`` of 0.x saves
_TEMPORARY = re.compile(
    r"\.(router\.json|router\.onnx|stats\.npz|tokenizer\.json|router\.onnx\.data|feedback\.jsonl|"
    r"router\.[0-9a-f]+\.onnx|stats\.[0-9a-f]+\.npz)\..+"
)
_save_hook: Callable[[str], None] | None = None


def set_save_hook(hook: Callable[[str], None] | None) -> None:
    """Testing hook: ``hook(step)`` runs before each step of :data:`SAVE_STEPS` of a save.

    The crash tests use it to kill the process at a chosen step; None removes the hook.
    """
    global _save_hook
    _save_hook = hook


def _step(name: str) -> None:
    if _save_hook is not None:
        _save_hook(name)


# what to do about an operating system error, by errno (the message names path and cause)
_FIXES = {
    errno.EACCES: "the folder is not writable for this user: copy the router to a folder you "
    "can write, or run as its owner",
    errno.EPERM: "the folder is not writable for this user: copy the router to a folder you "
    "can write, or run as its owner",
    errno.EROFS: "the file system is read-only: copy the router to a writable folder",
    errno.ENOSPC: "the disk is full: free some space and try again (the router on disk is "
    "unchanged)",
    errno.EDQUOT: "the disk quota is exceeded: free some space and try again (the router on "
    "disk is unchanged)",
    errno.ELOOP: "a symlink stands where irde expects a file: remove it",
}


def os_error_message(exc: OSError, action: str = "use") -> str:
    """One line naming the path, the cause and the fix of an operating system error."""
    path = exc.filename if exc.filename is not None else "a file"
    cause = exc.strerror or str(exc) or type(exc).__name__
    name = errno.errorcode.get(exc.errno, "") if exc.errno is not None else ""
    fix = _FIXES.get(exc.errno, "check the path and its permissions")
    return f"cannot {action} {path}: {cause}{f' ({name})' if name else ''}; {fix}"


@contextmanager
def file_errors(action: str) -> Iterator[None]:
    """Raise the operating system's errors (but a missing file) as :class:`RouterFileError`.

    ``FileNotFoundError`` passes unchanged (it is documented as such), as do the package's
    own errors.
    """
    try:
        yield
    except (FileNotFoundError, IrdeError):
        raise
    except OSError as exc:
        raise RouterFileError(
            os_error_message(exc, action),
            exc.errno,
            None if exc.filename is None else str(exc.filename),
        ) from exc


def check_lock_path(root: str | os.PathLike) -> None:
    """Refuse a lock path (``.irde.lock``) that exists and is not a regular file.

    A symlink there could make the lock open (and with filelock < 3.20.1 truncate) a file
    outside the folder; a directory or a fifo would make the lock fail or hang. Nothing is
    opened: the path is only ``lstat``-ed.

    Raises:
        RouterFileError: naming the path, what it is, and the fix (remove it).

    """
    path = Path(root) / LOCK_FILE
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise RouterFileError(os_error_message(exc, "check"), exc.errno, str(path)) from exc
    if stat.S_ISREG(mode):
        return
    kind = (
        "a symlink"
        if stat.S_ISLNK(mode)
        else "a directory"
        if stat.S_ISDIR(mode)
        else "a fifo"
        if stat.S_ISFIFO(mode)
        else "not a regular file"
    )
    raise RouterFileError(
        f"{path} is {kind}, not the folder's lock file: irde never opens it, as it could "
        f"point outside the folder; remove it (rm {path}) and irde creates a plain lock file",
        errno.ELOOP if stat.S_ISLNK(mode) else errno.EINVAL,
        str(path),
    )


def folder_lock(root: str | os.PathLike, timeout: float = LOCK_TIMEOUT) -> FileLock:
    """The inter-process lock of a router folder (``.irde.lock`` inside it).

    Hold it across a read-modify-write of the folder. It is released when the holder exits,
    even by ``kill -9`` (an OS file lock), so a crashed process never leaves it stuck.
    """
    return FileLock(str(Path(root) / LOCK_FILE), timeout=timeout)


def acquire(lock: FileLock, root: str | os.PathLike, timeout: float = LOCK_TIMEOUT) -> None:
    """Acquire ``lock``, raising :class:`RouterBusyError` after ``timeout`` seconds.

    Raises:
        RouterBusyError: another process holds the lock for longer than ``timeout``.
        RouterFileError: the lock path is not a regular file (:func:`check_lock_path`), or
            the lock file cannot be created (a read-only folder, a full disk).

    """
    check_lock_path(root)
    try:
        with file_errors("lock"):
            lock.acquire(timeout=timeout)
    except Timeout as exc:
        raise RouterBusyError(
            f"{Path(root) / LOCK_FILE} is held by another process for more than "
            f"{timeout:g} s; wait for it to finish and try again"
        ) from exc


def fsync_dir(root: Path) -> None:
    """Make a rename or a new file in ``root`` durable (no-op where unsupported)."""
    try:
        fd = os.open(root, os.O_RDONLY)
    except OSError:  # not supported (Windows): the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_temporary(root: Path, name: str, data: bytes) -> Path:
    """Write ``data`` (flushed to disk) to a new hidden temporary beside ``root / name``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=root)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


# sha256 of large files (the encoder's weights) already read by this process, keyed by the
# file's identity and its size, mtime and ctime (the inode change time, which no user can set
# back): a reload or a save of an unchanged folder does not read 90 MB again.
_HASH_CACHE: dict[tuple[object, ...], str] = {}
_HASH_CACHE_LOCK = threading.Lock()
_HASH_CACHE_SIZE = 64


def cached_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read once per process while its size, mtime and ctime stay."""
    st = os.stat(path)
    key = (
        os.path.realpath(path),
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
    )
    with _HASH_CACHE_LOCK:
        got = _HASH_CACHE.get(key)
    if got is None:
        got = sha256_file(path)
        with _HASH_CACHE_LOCK:
            if len(_HASH_CACHE) >= _HASH_CACHE_SIZE:
                _HASH_CACHE.clear()
            _HASH_CACHE[key] = got
    return got


def inside_file(root: Path, name: str) -> Path:
    """``root / name`` if it is a regular file whose real path is inside ``root``.

    A symlink is followed only to a file inside the folder: one that leaves it (``/etc``,
    another router) is refused, as are directories and fifos (a fifo would block a read).

    Raises:
        FileNotFoundError: the file (or a symlink's target) does not exist.
        RouterFormatError: the path leaves the folder or is not a regular file.

    """
    path = root / name
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    try:  # a missing file (or a symlink to one) first, as the Node.js host's realpath does
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} is missing: {root / CONFIG_FILE} names it; the router folder is "
            "incomplete (copy it again, or restore a backup)"
        ) from None
    if os.path.commonpath([real_root, real]) != real_root:
        raise RouterFormatError(
            f"{path} is a symlink to {real}, outside the router folder: a router reads only "
            "its own files; replace the link with the file itself"
        )
    if not stat.S_ISREG(mode):
        raise RouterFormatError(f"{path} is not a regular file; copy the router folder again")
    return path


def verify_generation(root: Path, config: RouterConfig) -> dict[str, bytes]:
    """Check every file ``config`` names in ``root``; return the graph and statistics bytes.

    Each file must be a regular file inside the folder (:func:`inside_file`) with the sha256
    router.json records (format_version 3: every file; 2: the graph and the statistics; 1:
    none). The encoder's weights are hashed once per process (:func:`cached_sha256`).

    Raises:
        FileNotFoundError: a file is missing.
        RouterFormatError: a file leaves the folder, or its bytes do not match.

    """
    out: dict[str, bytes] = {}
    for role, (name, expected) in config.verified_files().items():
        path = inside_file(root, name)
        if role in ("graph", "stats"):
            out[role] = path.read_bytes()
        if expected is None:
            continue
        if role in out:
            got = hashlib.sha256(out[role]).hexdigest()
        else:
            got = cached_sha256(path)
        if got != expected:
            raise RouterFormatError(
                f"{path} does not match the sha256 recorded in {root / CONFIG_FILE}: the file "
                "is damaged or was changed by hand; copy the router folder again"
            )
    return out


def _write_generation_file(
    root: Path, stem: str, suffix: str, data: bytes, name: str | None = None
) -> tuple[str, str]:
    """Write ``data`` as ``name`` (default ``<stem>.<hash>.<suffix>``); (name, sha256).

    A file of that name already holding ``data`` is left as it is (never rewritten).
    """
    sha = hashlib.sha256(data).hexdigest()
    name = name or f"{stem}.{sha[:16]}{suffix}"
    target = root / name
    if target.is_file() and sha256_file(target) == sha:
        return name, sha  # the same bytes are already there (never rewritten)
    tmp = write_temporary(root, name, data)
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return name, sha


def write_generation(
    root: Path, graph: bytes, stats: bytes, config: RouterConfig, fresh: bool = False
) -> RouterConfig:
    """Commit a new generation to ``root``; the caller holds :func:`folder_lock`.

    Writes the graph and the statistics under new names, then replaces ``router.json``
    naming them (the commit), then removes what no longer belongs to the router. ``fresh``:
    ``root`` holds no router (no ``router.json``), so the files take the plain names
    ``router.onnx`` and ``stats.npz`` of a freshly trained router.

    Returns:
        The committed configuration (the current format_version, every file's sha256).

    """
    with file_errors("save the router to"):
        return _write_generation(root, graph, stats, config, fresh)


def _write_generation(
    root: Path, graph: bytes, stats: bytes, config: RouterConfig, fresh: bool
) -> RouterConfig:
    _step("graph")
    names = (GRAPH_FILE, STATS_FILE) if fresh else (None, None)
    graph_name, graph_sha = _write_generation_file(root, "router", ".onnx", graph, names[0])
    _step("stats")
    stats_name, stats_sha = _write_generation_file(root, "stats", ".npz", stats, names[1])
    files = {"graph": (graph_name, graph_sha), "stats": (stats_name, stats_sha)}
    for role in FILE_ROLES[FORMAT_VERSION]:
        if role not in files:
            files[role] = (_fixed_file_name(role), _fixed_file_hash(root, config, role))
    committed = config.with_files(files)
    _step("manifest")
    tmp = write_temporary(root, CONFIG_FILE, committed.to_json().encode("utf-8"))
    _step("commit")
    try:
        os.replace(tmp, root / CONFIG_FILE)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(root)
    _step("cleanup")
    remove_stale(root, committed)
    return committed


def _fixed_file_name(role: str) -> str:
    return {"data": DATA_FILE, "tokenizer": TOKENIZER_FILE}[role]


def _fixed_file_hash(root: Path, config: RouterConfig, role: str) -> str:
    """The sha256 of a file a save never rewrites, checked against the one already recorded.

    A router loaded from a format_version 3 folder knows the hash its encoder and tokenizer
    had; a save refuses to record another one (the file changed after the load).
    """
    path = inside_file(root, _fixed_file_name(role))
    got = cached_sha256(path)
    expected = config.file_hash(role)
    if expected is not None and got != expected:
        raise RouterFormatError(
            f"{path} changed since the router was read (its sha256 is not the one recorded); "
            "the save is refused: copy the router folder again from a good copy"
        )
    return got


def stale_files(root: Path, config: RouterConfig) -> list[str]:
    """Files of ``root`` that belong to no generation: old generations and temporaries."""
    keep = {CONFIG_FILE, TOKENIZER_FILE, DATA_FILE, LOCK_FILE, config.graph_file, config.stats_file}
    stale = []
    for name in os.listdir(root):
        if name in keep:
            continue
        if (
            _GENERATION.fullmatch(name)
            or _TEMPORARY.fullmatch(name)
            or name in (GRAPH_FILE, STATS_FILE)
        ):
            stale.append(name)
    return sorted(stale)


def remove_stale(root: Path, config: RouterConfig) -> list[str]:
    """Remove :func:`stale_files`; only call while holding the folder lock."""
    removed = []
    for name in stale_files(root, config):
        try:
            (root / name).unlink()
            removed.append(name)
        except FileNotFoundError:
            pass
    return removed


def try_cleanup(root: Path, manifest: bytes) -> None:
    """Remove stale files if the lock is free now and ``router.json`` still holds ``manifest``.

    Best effort, for loaders: a busy lock (a save is running) or a read-only folder skips it.
    """
    try:
        check_lock_path(root)
    except RouterFileError:
        return  # never open a lock path that is not a plain file
    lock = folder_lock(root, timeout=0)
    try:
        lock.acquire()
    except (Timeout, OSError):
        return
    try:
        if (root / CONFIG_FILE).read_bytes() != manifest:
            return  # a save committed meanwhile; it cleaned up after itself
        remove_stale(root, RouterConfig.from_json(manifest))
    except OSError:
        pass
    finally:
        lock.release()


def router_file_sizes(root: Path, config: RouterConfig) -> dict[str, int]:
    """Bytes of every file of the generation ``config`` names; raises if one is missing."""
    names = (*FIXED_FILES, config.graph_file, config.stats_file)
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{root / missing[0]} is missing: the router is incomplete")
    return {name: (root / name).stat().st_size for name in names}


def probe_writable(root: Path) -> None:
    """Write and remove a temporary file in ``root`` and open its lock file for writing.

    Raises the system's ``PermissionError`` (its ``filename`` says which) when a save
    would fail for want of rights.
    """
    fd, tmp = tempfile.mkstemp(prefix=".irde-write-check.", suffix=".tmp", dir=root)
    os.close(fd)
    os.unlink(tmp)
    lock = root / LOCK_FILE
    if lock.is_file() and not lock.is_symlink():
        with open(lock, "r+b"):
            pass


def check_output_folder(path: str | os.PathLike, force: bool) -> Path:
    """Check that a new router may be written to ``path``; return it.

    ``path`` must not exist, be empty, or (with ``force``) hold a router already. A folder of
    other files is never replaced, nor the working directory or one of its parents.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise InvalidInputError(f"{target} exists and is not a directory")
    resolved = target.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise InvalidInputError(
            f"{path} is the working directory or a parent of it; give a new folder name "
            "for the router"
        )
    if target.is_dir():
        entries = sorted(os.listdir(target))
        if entries:
            if not force:
                raise InvalidInputError(
                    f"{target} is not empty; choose another --out or pass --force "
                    "(overwrite=True) to replace the router in it"
                )
            if not (target / CONFIG_FILE).is_file():
                shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
                raise InvalidInputError(
                    f"{target} holds files that are not a router ({shown}); --force only "
                    "replaces a router folder: choose another --out"
                )
    return target


# -- the store's API: one generation read, written or copied as a whole ----------------------
@dataclass(frozen=True)
class Generation:
    """One generation of a router: its ``router.json`` and the bytes of the files it names.

    ``root`` is the folder it was read from (None: built in memory, not saved yet); the
    encoder's files (``tokenizer.json``, ``router.onnx.data``) are then held as bytes.
    """

    config: RouterConfig
    graph: bytes
    stats: bytes | None = None
    root: Path | None = None
    manifest: bytes | None = None
    tokenizer: bytes | None = None
    data: bytes | None = None

    def where(self, role: str = "graph") -> str:
        """How messages name a file: its path, or ``router.onnx (in memory)``."""
        name = {
            "graph": self.config.graph_file,
            "stats": self.config.stats_file,
            "config": CONFIG_FILE,
            "tokenizer": TOKENIZER_FILE,
        }[role]
        return str(self.root / name) if self.root is not None else f"{name} (in memory)"

    @property
    def tokenizer_source(self) -> Path | bytes:
        """``tokenizer.json``: its path in the folder, or its bytes."""
        if self.root is not None and self.tokenizer is None:
            return self.root / TOKENIZER_FILE
        assert self.tokenizer is not None
        return self.tokenizer

    @property
    def external(self) -> Path | dict[str, bytes]:
        """Where the graph's external tensors live: the folder, or ``{file name: bytes}``."""
        if self.root is not None and self.data is None:
            return self.root
        return {DATA_FILE: self.data or b""}


def manifest_of(root: Path) -> bytes | None:
    """``router.json``'s bytes (the committed generation), or None when there is none."""
    try:
        return inside_file(root, CONFIG_FILE).read_bytes()
    except FileNotFoundError:
        return None


def read_generation(root: Path, use: Callable[[Generation], T]) -> T:
    """``use(generation)`` of the generation ``router.json`` names, its files verified.

    When reading or ``use`` fails with FileNotFoundError or RouterFormatError because another
    process committed a new generation meanwhile, the new one is read instead.
    """
    for _ in range(10):
        manifest = manifest_of(root)
        if manifest is None:
            raise FileNotFoundError(
                f"{root / CONFIG_FILE} is missing: not an irde router directory"
            )
        config = RouterConfig.from_json(manifest, str(root / CONFIG_FILE))
        try:
            files = verify_generation(root, config)
            return use(Generation(config, files["graph"], files["stats"], root, manifest))
        except (FileNotFoundError, RouterFormatError):
            if manifest_of(root) != manifest:
                continue  # another process committed a new generation: read that one
            raise
    raise RouterChangedError(f"{root} changes faster than it can be read; try again")


def generation_files(source: str | os.PathLike | Generation) -> dict[str, bytes]:
    """The bytes of a generation: ``router.json`` and every file it names.

    ``source``: a router folder (read without its lock; a new generation committed meanwhile
    is read instead) or a generation in memory. For another process or host to open
    (:func:`generation_from_files`).
    """
    if isinstance(source, Generation):
        gen = source
        assert gen.stats is not None and gen.tokenizer is not None and gen.data is not None
        named = {
            "graph": (gen.config.graph_file, gen.graph),
            "stats": (gen.config.stats_file, gen.stats),
            "data": (DATA_FILE, gen.data),
            "tokenizer": (TOKENIZER_FILE, gen.tokenizer),
        }
        files = {role: (n, hashlib.sha256(b).hexdigest()) for role, (n, b) in named.items()}
        return {
            CONFIG_FILE: gen.manifest or gen.config.with_files(files).to_json().encode("utf-8"),
            gen.config.graph_file: gen.graph,
            gen.config.stats_file: gen.stats,
            DATA_FILE: gen.data,
            TOKENIZER_FILE: gen.tokenizer,
        }
    root = check_router_dir(source)

    def files(gen: Generation) -> dict[str, bytes]:
        return generation_files(
            replace(
                gen,
                data=inside_file(root, DATA_FILE).read_bytes(),
                tokenizer=inside_file(root, TOKENIZER_FILE).read_bytes(),
            )
        )

    return read_generation(root, files)


def generation_from_files(files: Mapping[str, bytes]) -> Generation:
    """The in-memory generation of :func:`generation_files`' bytes."""
    config = RouterConfig.from_json(files[CONFIG_FILE], CONFIG_FILE)
    return Generation(
        config,
        files[config.graph_file],
        files[config.stats_file],
        None,
        files[CONFIG_FILE],
        files[TOKENIZER_FILE],
        files[DATA_FILE],
    )


def _same_bytes(path: Path, data: bytes | Path) -> bool:
    if not path.is_file():
        return False
    if isinstance(data, Path):
        return sha256_file(path) == sha256_file(data)
    return sha256_file(path) == hashlib.sha256(data).hexdigest()


def _put_fixed_files(target: Path, source: Generation) -> None:
    """Give ``target`` the encoder's tokenizer and weights of ``source`` (written once)."""
    wanted: dict[str, bytes | Path] = {}
    for name, held in ((TOKENIZER_FILE, source.tokenizer), (DATA_FILE, source.data)):
        if held is not None:
            wanted[name] = held
        else:
            assert source.root is not None
            wanted[name] = source.root / name
    if all(_same_bytes(target / name, data) for name, data in wanted.items()):
        return
    # another router lives there: it stops being one until the new router.json lands
    (target / CONFIG_FILE).unlink(missing_ok=True)
    for name, data in wanted.items():
        tmp = write_temporary(target, name, b"" if isinstance(data, Path) else data)
        if isinstance(data, Path):
            shutil.copyfile(data, tmp)
        os.replace(tmp, target / name)


def write_router(target: Path, generation: Generation, overwrite: bool = False) -> RouterConfig:
    """Save ``generation`` (graph and statistics bytes) as the router in another folder.

    ``target`` must be new, empty or (``overwrite``) hold a router
    (:func:`check_output_folder`). Its lock is held while the encoder's files are copied
    (once: they are never rewritten) and the generation is committed.
    """
    check_output_folder(target, overwrite)
    with file_errors("save the router to"):
        target.mkdir(parents=True, exist_ok=True)
    lock = folder_lock(target)
    acquire(lock, target)
    try:
        with file_errors("save the router to"):
            _put_fixed_files(target, generation)
        assert generation.stats is not None
        return write_generation(
            target,
            generation.graph,
            generation.stats,
            generation.config,
            fresh=not (target / CONFIG_FILE).is_file(),
        )
    finally:
        lock.release()
