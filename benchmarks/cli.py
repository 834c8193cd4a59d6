"""What the commands share: an argument parser whose refusals are one line, comma-separated lists, and
the --threads option."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import torch

from zoo.base import GenzooError
from zoo.files import user_path


class Parser(argparse.ArgumentParser):
    """argparse, but a refusal is a GenzooError (one `error:` line from the command, exit 2), never the
    usage block: that is for --help. No abbreviated options: `--seed 1` must not quietly mean `--seeds 1`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})
        self.paths: list[argparse.Action] = []

    def add_path(self, *flags: str, help: str, **kwargs: Any) -> argparse.Action:
        """A file or folder argument, read by `zoo.files.user_path`: `~` is the home folder, as the shell
        would have it, where the shell leaves it as typed (`--out=~/run`, quotes, a script's variable).
        An empty one is refused: Path("") is the current folder, which no command means (a report or an
        index would be written there). `help` is what to give, as in "a run folder ...": the refusal repeats it."""
        action = self.add_argument(*flags, help=help, **kwargs)
        self.paths.append(action)
        return action

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        for arg in sys.argv[1:] if args is None else args:
            try:
                str(arg).encode("utf-8")
            except UnicodeEncodeError:  # bytes the shell passed that are not UTF-8, which Python keeps as surrogates
                # a path of them trained, then failed in safetensors and the run's text files (results.md)
                shown = os.fsencode(arg).decode("utf-8", "backslashreplace")
                raise GenzooError(f"argument '{shown}' is not valid UTF-8 (a name in another encoding?); the commands "
                                  "take UTF-8 arguments, as a run's files record them: rename the file or folder") from None
        parsed = super().parse_args(args, namespace)
        for action in self.paths:
            if not isinstance(value := getattr(parsed, action.dest, None), str):
                continue
            name = action.option_strings[0] if action.option_strings else action.dest
            setattr(parsed, action.dest, user_path(value, name, str(action.help)))
        return parsed

    def error(self, message: str) -> None:  # type: ignore[override]
        if "expected one argument" in message:  # `--budget -5steps`: argparse reads -5steps as an option
            message += " (a value that starts with '-' is written --option=VALUE)"
        elif "not allowed with argument" in message:  # `--seeds 0 --seed 1`
            message += " (give one of them)"
        elif message.startswith("unrecognized arguments") and not message.split(": ", 1)[-1].startswith("-"):
            message += " (a value with a space in it is quoted: --budget '5 steps')"  # `--budget 5 steps`
        raise GenzooError(message)


def comma_list(option: str, text: str, example: str) -> list[str]:
    """`a, b` -> ["a", "b"]. An empty entry (`a,,b`, `a,`) is refused, not dropped: it is a slip of
    the keyboard, and a run without the item meant would say nothing of it."""
    items = [item.strip() for item in text.split(",")]
    if "" in items:
        raise GenzooError(f"{option} {text!r} has an empty entry; separate the items with single commas, e.g. {example}")
    return items


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity, where the system says), else the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_threads(threads: int | None) -> None:
    """--threads: torch's CPU threads, from 1 to the CPUs this process may use (more only makes them queue)."""
    if threads is None:
        return
    most = cpu_count()
    if not 1 <= threads <= most:
        raise GenzooError(f"--threads must be an int in [1, {most}] (the CPUs this process may use), got {threads}")
    torch.set_num_threads(threads)
