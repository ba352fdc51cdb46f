"""The one place that calls ezkl's async functions.

ezkl 23 makes some calls coroutines (``create_evm_verifier``, ``create_evm_vka``,
``register_vka``, ``verify_evm``, ``deploy_evm``, ``get_srs``). After they have run, a plain
interpreter can abort at exit (``PyGILState_Release``), so each call runs in a child
process (``python -m prover.ezkl_async``) that awaits it inside ``asyncio.run`` and leaves
with ``os._exit``. The child's ``HOME`` can be pointed at a folder holding the solcjs
stand-in for ``~/.svm`` (see :mod:`prover.solc`).

``get_srs`` is refused outright: it deletes local SRS files that differ from the public one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

#: The coroutines this module may run; anything else is refused.
ALLOWED = frozenset({"create_evm_verifier", "create_evm_vka", "register_vka", "verify_evm"})

_MARK = "EZKL_ASYNC_RESULT "


class EzklCallFailed(Exception):
    """The child process running an ezkl coroutine failed; ``output`` is what it printed."""

    def __init__(self, name: str, reason: str, output: str = "") -> None:
        self.name = name
        self.reason = reason
        self.output = output
        super().__init__(f"ezkl.{name} failed: {reason}")


def call(
    name: str, kwargs: dict[str, Any], *, home: Path | None = None, timeout_s: float = 300.0
) -> Any:
    """Await ``ezkl.<name>(**kwargs)`` in a child process and return its (JSON) result."""
    if name not in ALLOWED:
        raise ValueError(f"ezkl.{name} is not run through prover.ezkl_async")
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    if home is not None:
        env["HOME"] = str(home)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "prover.ezkl_async"],
            input=json.dumps({"name": name, "kwargs": kwargs}),
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise EzklCallFailed(name, f"no answer within {timeout_s:.0f} s") from exc
    output = done.stdout + done.stderr
    for line in done.stdout.splitlines():
        if line.startswith(_MARK):
            answer = json.loads(line[len(_MARK) :])
            if answer["ok"]:
                return answer["result"]
            raise EzklCallFailed(name, str(answer["error"]), output)
    raise EzklCallFailed(name, f"the child exited with {done.returncode}", output)


def _child() -> None:
    import asyncio

    import ezkl

    request = json.loads(sys.stdin.read())
    name = request["name"]

    async def run() -> Any:
        # ezkl's coroutines need a running loop when they are created, not only awaited
        return await getattr(ezkl, name)(**request["kwargs"])

    try:
        if name not in ALLOWED:
            raise ValueError(f"{name} is not allowed")
        result = asyncio.run(run())
        answer = {"ok": True, "result": result}
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
        answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(_MARK + json.dumps(answer, default=str) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    _child()
