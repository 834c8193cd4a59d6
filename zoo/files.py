"""The files genzoo writes, written one way: whole or not at all, with a refusal in one line.

`user_path` reads a path a user gave as the shell would (`~`), the commands and the Python API alike.
`atomic_write` writes a file under a temporary name in the same folder, then renames it, so a reader
never sees half a file. `set_aside` moves a file that does not read aside as `NAME.corrupt`, keeping it
for a look. `quiet_if_terminal_closed`, `say` and `SafeConsole` keep a print to a terminal that has gone
(SIGHUP's aftermath) from stopping the program. Benchmarks import these; zoo never imports benchmarks.
"""
from __future__ import annotations

import errno
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from rich.console import Console

from zoo.errors import GenzooError  # not zoo.base, which imports this module


def user_path(path: str | os.PathLike[str], name: str, give: str) -> str:
    """A file or folder a user gave, as the shell would have made it: `~` is the home folder, for a
    path the shell left as typed (quoted, `--out=~/run`, a script's variable, any path from Python).
    An empty one (or blanks) is refused: Path("") is the current folder, which no caller means.
    `name` names the argument and `give` says what to give, in the refusal."""
    text = os.fspath(path)
    if not text.strip():
        raise GenzooError(f"{name} is empty; give {give}")
    return os.path.expanduser(text)


def atomic_write(path: str | Path, data: str | bytes | Callable[[Path], None]) -> None:
    """Write `data` (text, bytes, or a function that writes the file it is given, opening it with
    Python's `open` so that a failure is an OSError) to `path`, whole or not at all. A target that
    cannot be written (a read-only folder, an immutable file, a full disk) is one GenzooError line
    naming the file, and no temporary file is left behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one per process: two writers never share one
    remove_abandoned_temporaries(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            tmp.write_text(data)
        elif isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            data(tmp)
        flush_to_disk(tmp)  # before the rename: after a power loss the name never points at unwritten data
        os.replace(tmp, path)
        with suppress(OSError):  # and the rename itself; a system whose folders do not open skips this
            flush_to_disk(path.parent)
    except BaseException as e:  # a signal in the middle too: no half-written temporary stays behind
        with suppress(OSError):  # a folder we cannot write holds no temporary file of ours either
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise unwritable(path, e) from None
        raise


def flush_to_disk(path: str | Path) -> None:
    """Have the OS write a file (or a folder's entries) to the disk now, not when it gets round to it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_error(folder: str | Path) -> OSError | None:
    """Why `folder` takes no files (read-only, full, not a folder), or None where it does. It makes and
    removes a folder there: the permission bits alone miss a read-only mount, and root passes them all."""
    try:
        tempfile.TemporaryDirectory(prefix=".genzoo-write-test-", dir=folder).cleanup()
    except OSError as e:
        return e
    return None


def check_writable(folder: str | Path, what: str) -> None:
    """One line before any work where `folder` takes no files; `what` says what the command would
    write there and what to do."""
    if (e := write_error(folder)) is not None:
        raise GenzooError(f"cannot write in {folder} ({_reason(e)}); {what}")


def unwritable(path: str | Path, e: OSError) -> GenzooError:
    """The one line for a file that cannot be written: which file, why, and what to do."""
    return GenzooError(f"cannot write {path} ({_reason(e)}); make it and its folder writable, or write somewhere else")


def stale_temporaries(path: str | Path) -> list[Path]:
    """Temporary files `atomic_write` left for `path` in a process that was killed mid-write."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


ABANDONED_AFTER = 60.0  # seconds since a temporary file was last written, its process gone, before it is removed


def remove_abandoned_temporaries(path: str | Path) -> None:
    """Remove the temporary files a writer of `path` left when it was killed mid-write (kill -9, the
    out-of-memory killer), which nothing else removes: those whose process is no longer running here and
    that were last written over a minute ago (another machine's writer on a shared folder keeps
    writing its own, so it is never taken from under it)."""
    for stale in stale_temporaries(path):
        pid = stale.name[: -len(".tmp")].rpartition(".")[2]
        with suppress(OSError, OverflowError):
            if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)) \
                    and time.time() - stale.stat().st_mtime > ABANDONED_AFTER:
                stale.unlink()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: asks whether the process exists, sends nothing
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def set_aside(path: str | Path, problem: str, outcome: str = "") -> Path:
    """Move a file that does not read to `NAME.corrupt` (kept to look at, out of the way of a rerun),
    and say so in one warning line: "warning: PROBLEM; set aside as NAME.corrupt[, OUTCOME]"."""
    path = Path(path)
    bad = path.with_name(path.name + ".corrupt")
    try:
        os.replace(path, bad)
    except OSError as e:
        raise GenzooError(f"{problem}, and it cannot be set aside ({_reason(e)}); move or delete {path}") from None
    say(f"warning: {problem}; set aside as {bad.name}" + (f", {outcome}" if outcome else ""))
    return bad


def say(text: str) -> None:
    """print(text), unless the terminal has closed (see `quiet_if_terminal_closed`)."""
    with quiet_if_terminal_closed():
        print(text, flush=True)


@contextmanager
def quiet_if_terminal_closed() -> Iterator[None]:
    """Around a print: once the terminal has closed (EIO) or the reader of a pipe has gone (EPIPE), a
    print fails. Then the text is dropped and stdout and stderr are pointed at /dev/null, so that no
    later print, nor Python's flush at exit, fails: what is saved never depends on being told."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.EIO, errno.EPIPE):
            raise
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            try:
                os.dup2(devnull, stream.fileno())
            except (OSError, ValueError, AttributeError):  # not a real file (a test's capture)
                pass
        os.close(devnull)


def _reason(e: OSError) -> str:
    return e.strerror or type(e).__name__


class SafeConsole(Console):
    """rich's Console, except that a terminal or pipe that has closed silences it (see
    `quiet_if_terminal_closed`) instead of ending the program, as rich does on a broken pipe."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        with quiet_if_terminal_closed():
            super().print(*objects, **kwargs)

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, "the reader of the console has gone")  # to `print` above
