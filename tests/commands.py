"""Running a command-line program in a test: its output, or a failure that shows the output's end."""

from __future__ import annotations

import subprocess
from pathlib import Path


def run_ok(cmd: list[str], cwd: Path, timeout: float = 600, env: dict[str, str] | None = None) -> str:
    """Run ``cmd`` in ``cwd``; its stdout and stderr, after asserting it exited with 0."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-4000:]}"
    return out
