"""What every job's entry point shares: user errors as one line and exit status 2.

A user error (a bad flag, a missing input, an --output the job may not write) is reported
before Spark starts, as `<job>: error: <what to do>` on stderr, never as a traceback after a
JVM start-up; internal errors keep their traceback.
"""

from __future__ import annotations

import sys

USER_ERROR_EXIT = 2


def user_error(job: str, exc: BaseException) -> int:
    """Print `exc` as the one-line user error of `job`; returns the exit status to use."""
    message = " ".join(str(exc).split())  # one line, whatever the exception's text
    print(f"{job}: error: {message}", file=sys.stderr)
    return USER_ERROR_EXIT
