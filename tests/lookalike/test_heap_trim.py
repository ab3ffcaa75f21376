"""The gateway's process gives a large buffer back to the kernel the moment it is freed.

Run in a fresh interpreter each time: the setting is per process, and glibc's dynamic threshold,
which it replaces, rises with the first large block freed (here, as after the first upload).
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from tests.support import REPO

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc is what this is about")

AFTER_A_FREED_20_MB_BUFFER = """
import sys
from lookalike.heap_trim import mmap_large_buffers

def rss_kb():
    with open("/proc/self/status") as fh:
        return int(next(line for line in fh if line.startswith("VmRSS:")).split()[1])

fixed = sys.argv[1] == "fixed" and mmap_large_buffers()
first = bytearray(20 << 20)
del first  # glibc's dynamic threshold now keeps the next 20 MB block on the heap
before = rss_kb()
body = bytearray(20 << 20)
body[::4096] = b"x" * len(body[::4096])  # every page touched, as a received upload is
del body
print(fixed, rss_kb() - before)
"""


def rss_kept_kb(mode: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", AFTER_A_FREED_20_MB_BUFFER, mode], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.split()
    return out[0] == "True", int(out[1])


def test_with_the_threshold_fixed_a_freed_upload_buffer_leaves_no_resident_memory() -> None:
    fixed, kept_kb = rss_kept_kb("fixed")
    assert fixed
    assert kept_kb < 2 * 1024, f"{kept_kb} kB still resident"


def test_without_it_glibc_keeps_the_freed_buffer_resident() -> None:
    """Why the gateway sets it: the dynamic threshold keeps freed bodies on the heap."""
    _, kept_kb = rss_kept_kb("dynamic")
    assert kept_kb > 15 * 1024, f"only {kept_kb} kB resident: this C library returns large blocks by itself"
