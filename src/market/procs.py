"""Child processes the demo and tests start (worker, node, settler), always stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the whole process group (crash tests)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def spawn(name: str, args: Sequence[str], env: Mapping[str, str], log_dir: Path) -> Child:
    """Start ``python -m market.cli ARGS`` (or any argv) in its own process group."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full_env = {**os.environ, **env}
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                start_new_session=True)
    return Child(name, proc, log_path)


def verimarket_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "market.cli", *args]


def wait_for_file(path: Path, children: Sequence[Child], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        for c in children:
            if not c.alive():
                raise RuntimeError(f"{c.name} exited early (code {c.process.returncode}):\n{c.tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} did not appear within {timeout} s")
        time.sleep(0.05)
