"""Progress: a bar with images/s on a terminal, plain log lines in a pipe (CI logs, cron mails)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

from tests.indexing.test_incremental import seeded_index
from tests.support import REPO


def command(catalog: Path, root: Path) -> list[str]:
    return [sys.executable, "-m", "indexing", "--catalog", str(catalog), "--index", str(root),
            "--weights", "random", "--precision", "fp32"]


def run_on_a_terminal(args: list[str]) -> str:
    """Run with stdout and stderr on a pseudo-terminal, as in a shell; everything it drew."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 24×100, as a terminal has
    job = subprocess.Popen(args, cwd=REPO, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal)
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the job closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    assert job.wait(timeout=300) == 0
    return b"".join(chunks).decode(errors="replace")


def test_a_terminal_gets_a_progress_bar_with_images_per_second(small_catalog: Path, built_index: Path,
                                                               tmp_path: Path) -> None:
    root = seeded_index(built_index, tmp_path / "index")
    drawn = run_on_a_terminal(command(small_catalog, root))
    assert "img/s" in drawn and "30/30" in drawn and "\r" in drawn
    assert "embedded 0, reused 30, removed 0" in drawn


def test_a_pipe_gets_plain_log_lines(small_catalog: Path, built_index: Path, tmp_path: Path) -> None:
    root = seeded_index(built_index, tmp_path / "index")
    done = subprocess.run(command(small_catalog, root), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "30 of 30 images (embedded 0, reused 30), " in done.stderr and "images/s" in done.stderr
    assert "\r" not in done.stderr and "img/s" not in done.stderr
    assert "embedded 0, reused 30, removed 0" in done.stdout
