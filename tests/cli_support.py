"""Running a command line's ``main`` in the test's process, and reading its one-line user error."""

from __future__ import annotations

from typing import Callable


def run_main(main: Callable, capsys, *args) -> tuple[int, str, str]:
    """``main(args)`` as the command line runs it (argparse's own exits included): exit code, stdout, stderr."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # an option argparse refuses
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(err: str) -> str:
    """The user error: exactly one line on stderr, an ``error: ...``, no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error: " in lines[0] and "Traceback" not in err, err
    return lines[0]
