"""Where the project's files and tools live, found once in one place."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from market.errors import ConfigError

#: The repository root when running from a checkout (src/market/paths.py → ../..).
REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """Where the embedded default keeps its state (deployments, SQLite, blobs, queues)."""
    return Path(os.environ.get("VERIMARKET_HOME", REPO_ROOT / ".verimarket"))


def artifacts_dir() -> Path:
    """Where `verimarket models build` writes model artefacts."""
    return Path(os.environ.get("VERIMARKET_ARTIFACTS", REPO_ROOT / "artifacts"))


def foundry_tool(name: str) -> Path:
    """Path of a Foundry binary (anvil, forge, cast) shipped inside its npm package.

    Looks at VERIMARKET_<NAME>_BIN, then node_modules, then PATH.
    """
    override = os.environ.get(f"VERIMARKET_{name.upper()}_BIN")
    if override:
        return Path(override)
    shipped = REPO_ROOT / "node_modules" / "@foundry-rs" / f"{name}-linux-amd64" / "bin" / name
    if shipped.exists():
        return shipped
    found = shutil.which(name)
    if found:
        return Path(found)
    raise ConfigError(
        f"cannot find the `{name}` binary. Run `make setup` (it installs @foundry-rs/{name} "
        f"from npm), or set VERIMARKET_{name.upper()}_BIN to its path."
    )
