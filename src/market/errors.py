"""The root of every error verimarket raises, and the domain bases under it.

Each specific error keeps its fields and builds a message a person can act on (ape's
exceptions are the model). Packages below ``market`` subclass these; ``worker`` and
``prover`` have their own roots.
"""

from __future__ import annotations


class VerimarketError(Exception):
    """Root of all errors raised by the market package."""


class ConfigError(VerimarketError):
    """A setting is missing or invalid; the message names it and what to set."""


class ChainError(VerimarketError):
    """Something went wrong talking to the chain."""


class RpcUnreachable(ChainError):
    """The JSON-RPC endpoint did not answer."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"cannot reach the chain at {url}: {reason}. "
            "Check that the node is running and the URL (--rpc / VERIMARKET_RPC_URL) is right."
        )


class InsufficientFunds(ChainError):
    """The sending key cannot pay for the transaction."""

    def __init__(self, address: str, balance: int, needed: int | None = None) -> None:
        self.address = address
        self.balance = balance
        self.needed = needed
        need = f" (needs about {needed} wei)" if needed is not None else ""
        super().__init__(
            f"account {address} has {balance} wei, not enough to send this transaction{need}. "
            "Fund it, or use another key (--key / VERIMARKET_PRIVATE_KEY)."
        )


class TransactionFailed(ChainError):
    """A mined transaction reverted without decodable reason."""

    def __init__(self, tx_hash: str, detail: str = "") -> None:
        self.tx_hash = tx_hash
        super().__init__(f"transaction {tx_hash} reverted{': ' + detail if detail else ''}")


class ContractRevert(ChainError):
    """A contract call reverted with a custom error; ``name`` and ``args`` keep its fields."""

    def __init__(
        self,
        name: str,
        args: dict[str, object],
        contract: str | None = None,
        data: bytes | None = None,
    ) -> None:
        self.name = name
        self.args_by_name = args
        self.contract = contract
        #: the raw revert data, so the error can be stored and decoded again later
        self.data = data
        shown = ", ".join(f"{k}={_show(v)}" for k, v in args.items())
        where = f"{contract}: " if contract else ""
        super().__init__(f"{where}{name}({shown})")


def _show(value: object) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)
