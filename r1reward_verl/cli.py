"""One way for every command line of the project to report a user error.

The standard (README, "Bad input"): a user error is ONE line on stderr naming the file, row or option,
exit code 2, no traceback. Commands raise :class:`UserError` (or let argparse reject an option) and
wrap their ``main`` in :func:`cli_main`; nothing else prints or exits on a user error.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Callable, NoReturn, Optional

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with what the user gave (a file, a row, an option): reported in one line, exit code 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a rejected option is one line (``prog: error: ...``) instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}\n")


def int_at_least(low: int, why: str = "") -> Callable[[str], int]:
    """argparse ``type=`` for an integer >= ``low`` (``why``: said in brackets when one is refused)."""
    wants = f"wants an integer >= {low}" + (f" ({why})" if why else "")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{wants}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{wants}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)  # ``--limit 0`` is refused, not read as "everything"
non_negative_int = int_at_least(0)


def cli_main(main: Callable[..., Optional[int]]) -> Callable[..., int]:
    """Wrap a command's ``main``: a :class:`UserError` becomes ``error: ...`` on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USER_ERROR

    return wrapped
