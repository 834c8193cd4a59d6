"""The one exception for bad input, and how any exception is said in one line."""
from __future__ import annotations


class GenzooError(ValueError):
    """Bad input from a user: the message is one line that says what was wrong and what is accepted.
    A line break inside it (in a file's name) is shown as \\n, so that it stays one line."""

    def __str__(self) -> str:
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")


def one_line(e: BaseException) -> str:
    """An exception in one line, for refusals, warnings and records: its class and the first line of
    its message, cut at 160 characters."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160]}" if text else type(e).__name__
