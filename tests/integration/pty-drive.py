#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs a command on a pseudo-terminal, answers what it prints, and passes its output and exit status on.
"""Usage: pty-drive.py [--expect REGEX --send TEXT]... [--timeout S] -- COMMAND [ARGS...]

Each --expect/--send pair waits (in order) for REGEX in the output so far and then types TEXT
(Python escapes: "\\x03" is Ctrl-C, which the terminal turns into SIGINT). The raw output, carriage
returns and escape codes included, goes to stdout; the exit status is the command's (124 on timeout).
"""
import os
import pty
import re
import select
import sys
import time


def main():
    args = sys.argv[1:]
    steps, timeout = [], 60.0
    while args and args[0] != "--":
        if args[0] == "--expect" and len(args) >= 4 and args[2] == "--send":
            steps.append((re.compile(args[1].encode()), args[3].encode().decode("unicode_escape").encode()))
            args = args[4:]
        elif args[0] == "--timeout":
            timeout = float(args[1])
            args = args[2:]
        else:
            sys.exit(__doc__)
    command = args[1:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(command[0], command)
    output, searched, deadline = b"", 0, time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            sys.stdout.buffer.write(output)
            sys.exit(124)
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                break
            output += chunk
        if steps:
            m = steps[0][0].search(output, searched)
            if m:
                searched = m.end()
                # Give the program a moment to reach its read() or signal wait.
                time.sleep(0.2)
                os.write(fd, steps[0][1])
                steps.pop(0)
    _, status = os.waitpid(pid, 0)
    sys.stdout.buffer.write(output)
    sys.exit(os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8)


if __name__ == "__main__":
    main()
