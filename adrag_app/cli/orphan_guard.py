"""Stops the services of `adrag up` when `adrag up` dies, even by SIGKILL.

`adrag up` starts this first (as a script: standard library only, nothing to import), with a
pipe on its stdin, and writes the process group of each service it starts, one a line. When
`adrag up` ends, however it ends, the kernel closes that pipe. At the end of its input the guard
stops every group it was given: SIGTERM, then SIGKILL to what is left after a grace period. A
line "done" means `adrag up` stopped them itself, and the guard just exits.

Groups, not processes: `dg dev` runs the webserver, the daemon and code servers (which run the
runs) as its children, and none of them watches for its parent's death.
"""

from __future__ import annotations

import os
import signal
import sys
import time

DONE = "done"
GRACE_S = 10.0


def stop_groups(groups: list[int], grace: float = GRACE_S) -> None:
    """SIGTERM each process group, then SIGKILL the ones still there after ``grace`` seconds."""
    alive = [g for g in groups if _signal_group(g, signal.SIGTERM)]
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [g for g in alive if _signal_group(g, 0)]
    for g in alive:
        _signal_group(g, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group; whether any process of it was there to receive it."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # the group id was reused by someone else's processes
        return False


def main() -> None:
    # Ctrl-C and the terminal's hangup are for `adrag up`, which stops its services itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    groups: list[int] = []
    for line in sys.stdin:
        if line.strip() == DONE:
            return
        groups.append(int(line))
    stop_groups(groups)


if __name__ == "__main__":
    main()
