"""The genzoo benchmark runner and its reports: python -m benchmarks.run"""
import sys


def _said_in_one_line(kind, value, traceback):  # type: ignore[no-untyped-def]
    """Ctrl-C that no command catches (while torch imports, say) is one line, not a traceback of
    whatever was loading; Python then still exits as a process stopped by SIGINT. Every other
    uncaught exception keeps its traceback."""
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted (Ctrl-C)", file=sys.stderr)
    else:
        sys.__excepthook__(kind, value, traceback)


sys.excepthook = _said_in_one_line
