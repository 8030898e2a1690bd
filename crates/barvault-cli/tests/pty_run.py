"""Runs a command with one of its output streams on a pseudo-terminal, as a user's shell would.

usage: pty_run.py stdout|stderr COMMAND [ARG...]

What the command writes to the terminal is copied to this script's standard output; its
other streams are inherited. The command's exit code is the last line on standard error,
as `exit=N`.
"""

import os
import pty
import subprocess
import sys


def main() -> int:
    which, cmd = sys.argv[1], sys.argv[2:]
    master, slave = pty.openpty()
    child = subprocess.Popen(cmd, **{which: slave})
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal closed with the command
            break
        if not chunk:
            break
        seen += chunk
    code = child.wait()
    sys.stdout.buffer.write(seen)
    sys.stdout.flush()
    sys.stderr.write(f"exit={code}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
