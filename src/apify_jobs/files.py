"""File helpers every layer uses: a file written whole or not at all (temporary file, fsync, rename), its
sha256, a folder's fsync, a probe that a folder can be written, and whether a process lives (leases and
leftover temporary files name their process)."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import tempfile
from collections.abc import Iterable

from apify_jobs.failures import OutputFailure

TEMP_SUFFIX = ".part"
_PID = os.getpid()


def create_temporary(folder: str, name: str) -> tuple[int, str]:
    """A new temporary file for ``name`` in ``folder`` (created if missing): `.<name>.<pid>.<random>.part`, with
    the permissions open() gives (0666 less the umask; mkstemp's 0600 broke artifact uploads), in one open()
    where mkstemp took a mkdir, a getrandom and an fchmod more."""
    for _ in range(100):
        path = os.path.join(folder, f".{name}.{_PID}.{random.getrandbits(48):012x}{TEMP_SUFFIX}")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), path
        except FileExistsError:
            continue
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
    raise FileExistsError(errno.EEXIST, "no free temporary name")


def check_writable_folder(folder: str) -> None:
    """Create (and remove) a file in ``folder``, creating the folder if needed; OutputFailure if that fails."""
    try:
        os.makedirs(folder or ".", exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder or ".", prefix=".apify-jobs-preflight-")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise OutputFailure(f"cannot write into {folder or '.'}: {exc.strerror or exc}") from None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (ours included): what a temporary file's or a lease's PID is checked by."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_file_whole(path: str, data: bytes | Iterable[bytes]) -> None:
    """A report written the same whole-or-nothing way as outputs: from pieces (a report of many jobs is never
    held whole) into a temporary file beside it, fsynced and renamed; OutputFailure if that fails."""
    target = os.path.abspath(path)
    folder = os.path.dirname(target)
    temporary = None
    try:
        handle, temporary = create_temporary(folder, os.path.basename(target))
        with os.fdopen(handle, "wb", buffering=0) as stream:
            for piece in [data] if isinstance(data, bytes) else data:
                stream.write(piece)
            os.fsync(stream.fileno())
        os.replace(temporary, target)
        temporary = None
    except OSError as exc:
        raise OutputFailure(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if temporary is not None:
            remove_quietly(temporary)
    fsync_folder(folder)


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def fsync_folder(folder: str) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def sha256_of(path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()
