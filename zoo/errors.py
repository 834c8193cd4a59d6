"""The one exception for bad input, and how any exception is said in one line."""
from __future__ import annotations


class GenzooError(ValueError):
    """Bad input from a user: the message is one line that says what was wrong and what is accepted.
    A line break inside it (in a file's name) is shown as \\n, so that it stays one line."""

    def __str__(self) -> str:
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")


def one_line(e: BaseException) -> str:
    """An exception in one line, for refusals, warnings and records: its class and the first line of
    its message (with the next where the first is a header ending in ':', as torch's load_state_dict
    "Error(s) in loading state_dict for X:" is), cut at 160 characters."""
    text = [line.strip() for line in str(e).splitlines() if line.strip()]
    first = f"{text[0]} {text[1]}" if len(text) > 1 and text[0].endswith(":") else text[0] if text else ""
    return f"{type(e).__name__}: {first[:160]}" if first else type(e).__name__
