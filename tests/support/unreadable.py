"""Files that really cannot be read, even by root.

``chmod 000`` stops reads only for users without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH,
and tests here run as root. Linux capabilities belong to each thread, so
:func:`reads_obey_permissions` takes those two out of the calling thread's effective set for
the block (and puts them back after): the kernel then refuses to open a mode-000 file with
EACCES, exactly as it does for any other user. Nothing is faked; the pipeline runs in this
thread (Dagster's in-process execution). Threads started inside the block keep the reduced
set, which only matters for files they could not otherwise read: none in these tests.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from pathlib import Path

CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def make_unreadable(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0)


@contextlib.contextmanager
def reads_obey_permissions() -> Iterator[None]:
    """Within the block, file permissions bind this thread even when it runs as root."""
    if os.geteuid() != 0:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    saved = (_Data * 2)()
    if libc.capget(ctypes.byref(header), saved) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    reduced = (_Data * 2)(*saved)
    reduced[0].effective &= ~((1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(header), reduced) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    try:
        yield
    finally:
        header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
        libc.capset(ctypes.byref(header), saved)
