"""Compile Solidity with solcjs through tools/solc.js (no native solc can be downloaded here).

Also writes the stand-in that ezkl's ``create_evm_verifier`` looks for at
``$HOME/.svm/<version>/solc-<version>``: a script that runs the same solcjs, so ezkl's own
compile step (it only wants the ABI) works offline instead of trying to download solc.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

from prover.config import SolcOptions
from prover.errors import SolcError


def compile_standard_json(source_name: str, source: str, opts: SolcOptions) -> dict[str, Any]:
    """Compile one source (optimizer on) and return solc's output JSON; raise on errors."""
    request = {
        "language": "Solidity",
        "sources": {source_name: {"content": source}},
        "settings": {
            "optimizer": {"enabled": True, "runs": opts.optimizer_runs},
            "evmVersion": opts.evm_version,
            "outputSelection": {
                "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}
            },
        },
    }
    if not opts.solc_js.is_file():
        raise SolcError(f"the solcjs wrapper {opts.solc_js} does not exist (VERIMARKET_SOLC_JS)")
    env = {**os.environ, "SOLCJS_MODULE": opts.solcjs_module}
    try:
        done = subprocess.run(
            [opts.node, str(opts.solc_js), "--standard-json"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            env=env,
            timeout=opts.timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SolcError(f"could not run solcjs ({opts.node} {opts.solc_js}): {exc}") from exc
    if done.returncode != 0:
        raise SolcError(f"solcjs exited with {done.returncode}: {done.stderr.strip()[-2000:]}")
    try:
        output: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise SolcError(f"solcjs printed no JSON: {done.stdout[:500]!r}") from exc
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise SolcError("; ".join(str(e.get("formattedMessage", e)) for e in errors)[:4000])
    return output


def write_svm_wrapper(home: Path, opts: SolcOptions) -> Path:
    """Put a ``solc-<version>`` script under ``home/.svm/<version>/`` that runs solcjs.

    It answers ``--version`` like a native solc and compiles ``--standard-json`` from stdin,
    which is all ezkl (through foundry-compilers) asks of it. Nothing is downloaded.
    """
    version = opts.solc_version
    path = home / ".svm" / version / f"solc-{version}"
    path.parent.mkdir(parents=True, exist_ok=True)
    script = (
        "#!/bin/sh\n"
        "# Written by verimarket's prover: solcjs standing in for a native solc (offline).\n"
        f"SOLCJS_MODULE={shlex.quote(opts.solcjs_module)} "
        f'exec {shlex.quote(opts.node)} {shlex.quote(str(opts.solc_js.resolve()))} "$@"\n'
    )
    path.write_text(script)
    path.chmod(0o755)
    return path
