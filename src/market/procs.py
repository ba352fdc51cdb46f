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
        proc = subprocess.Popen(
            list(args), stdout=out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )
    return Child(name, proc, log_path)


def verimarket_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "market.cli", *args]


def wait_for_file(path: Path, children: Sequence[Child], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        for c in children:
            if not c.alive():
                raise RuntimeError(
                    f"{c.name} exited early (code {c.process.returncode}):\n{c.tail()}"
                )
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} did not appear within {timeout} s")
        time.sleep(0.05)


def start_stack(
    work: Path,
    dep_file: Path,
    *,
    node_key: str,
    settler_key: str,
    models: Sequence[str],
    env: Mapping[str, str],
    workers: int = 1,
    timeout: float = 120.0,
) -> list[Child]:
    """Start inference worker(s), one node and the settlement service; wait until ready.

    On failure everything already started is stopped before the error propagates.
    """
    env = {"VERIMARKET_HOME": str(work), "VERIMARKET_WARM_MODELS": ",".join(models), **env}
    logs = work / "logs"
    children: list[Child] = []
    try:
        for i in range(workers):
            children.append(spawn(f"worker-{i}", verimarket_argv("worker"), env, logs))
        model_args = [a for m in models for a in ("--model", m)]
        children.append(
            spawn(
                "node",
                verimarket_argv("node", "run", *model_args, "--deployment", str(dep_file)),
                {**env, "VERIMARKET_PRIVATE_KEY": node_key},
                logs,
            )
        )
        children.append(
            spawn(
                "settler",
                verimarket_argv("settle", "--deployment", str(dep_file)),
                {**env, "VERIMARKET_PRIVATE_KEY": settler_key},
                logs,
            )
        )
        for name in ("node-ready", "settler-ready"):
            wait_for_file(work / name, children, timeout)
        deadline = time.monotonic() + timeout
        while len(list(work.glob("worker-ready-*"))) < workers:
            for c in children:
                if not c.alive():
                    raise RuntimeError(f"{c.name} exited early:\n{c.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not ready after {timeout} s")
            time.sleep(0.05)
    except BaseException:
        for c in reversed(children):
            c.stop()
        raise
    return children
