"""Start and stop a local anvil chain from the npm package (development and tests)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from market.errors import ChainError
from market.paths import foundry_tool

#: anvil's default mnemonic yields these well-known development keys (never use them elsewhere).
DEV_KEYS: tuple[str, ...] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Anvil:
    """A running anvil process. Use :func:`start_anvil` or the context manager :func:`anvil`."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop the process (idempotent); waits for it to exit."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_anvil(
    *,
    port: int | None = None,
    block_time: float | None = None,
    chain_id: int = 31337,
    accounts: int = 10,
    balance_eth: int = 10_000,
    log_path: Path | None = None,
    extra_args: tuple[str, ...] = (),
    timeout_s: float = 30.0,
) -> Anvil:
    """Start anvil on a free port and wait until it answers JSON-RPC.

    With ``block_time`` None anvil mines a block per transaction (automine).
    """
    port = port or free_port()
    args = [
        str(foundry_tool("anvil")),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--chain-id",
        str(chain_id),
        "--accounts",
        str(accounts),
        "--balance",
        str(balance_eth),
        "--silent",
        *extra_args,
    ]
    if block_time is not None:
        args += ["--block-time", str(block_time)]
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    finally:
        if log_path:
            out.close()  # type: ignore[union-attr]
    node = Anvil(process=proc, port=port, log_path=log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ChainError(f"anvil exited at start with code {proc.returncode} (port {port})")
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.post(
                node.rpc_url,
                json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                timeout=1.0,
            )
            if r.status_code == 200:
                return node
        time.sleep(0.05)
    node.stop()
    raise ChainError(f"anvil did not answer on port {port} within {timeout_s} s")


@contextlib.contextmanager
def anvil(**kwargs: object) -> Iterator[Anvil]:
    """Context manager: a running anvil that is always stopped on exit."""
    node = start_anvil(**kwargs)  # type: ignore[arg-type]
    try:
        yield node
    finally:
        node.stop()
