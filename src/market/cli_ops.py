"""Operator, agent and model commands: `verimarket node status|earnings|withdraw|unbond`,
`verimarket agent fund|policy|submit|watch`, `verimarket models list|show`.

Every command reads the chain (and the local artefacts for model names); errors a user can
cause end as one line that says what to do (see market.cli.friendly).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from market.errors import ConfigError

ETH = 10**18
console = Console()

DeploymentOpt = Annotated[Path | None, typer.Option("--deployment", help="deployment file")]
KeyOpt = Annotated[
    str | None,
    typer.Option("--key", help="private key (default: VERIMARKET_PRIVATE_KEY)", show_default=False),
]


def _market(deployment: Path | None, key: str | None, what: str | None) -> Any:
    from market.chain.client import ChainClient
    from market.chain.market import Market
    from market.cli import _key, _load_deployment

    dep = _load_deployment(deployment)
    k = _key(key, what) if what else key
    return Market(ChainClient(dep.rpc_url, k), dep)


def _eth(wei: int) -> str:
    return f"{wei / ETH:.6f} ETH"


def _address(value: str, what: str) -> str:
    from web3 import Web3

    if not Web3.is_address(value):
        raise ConfigError(f"{what} {value!r} is not an address (0x + 40 hex digits)")
    return str(Web3.to_checksum_address(value))


def _model_id(name_or_id: str) -> bytes:
    """A model id from a 0x id or the name of a built model."""
    if name_or_id.startswith("0x") and len(name_or_id) == 66:
        try:
            return bytes.fromhex(name_or_id[2:])
        except ValueError as exc:
            raise ConfigError(f"model id {name_or_id!r} is not hex") from exc
    from market.config import get_settings
    from worker.generative import built_manifest

    try:
        return built_manifest(get_settings().artifacts, name_or_id).model_id_bytes
    except LookupError as exc:
        raise ConfigError(
            f"{exc}; pass a model name that `verimarket models list` shows, or a 0x model id"
        ) from exc


def register(app: typer.Typer, node_app: typer.Typer, models_app: typer.Typer) -> None:
    agent_app = typer.Typer(
        no_args_is_help=True, help="Fund an agent, set its policy, submit, watch."
    )
    app.add_typer(agent_app, name="agent")
    from market.cli import friendly, submit

    agent_app.command("submit")(submit)

    # ------------------------------------------------------------------ node
    @node_app.command("status")
    @friendly
    def node_status(
        address: Annotated[str | None, typer.Argument(help="node (default: your key's)")] = None,
        deployment: DeploymentOpt = None,
        key: KeyOpt = None,
    ) -> None:
        """Stake, locked collateral, unbonding, and withdrawable earnings of a node."""
        m = _market(deployment, key, None if address else "showing your node")
        who = _address(address, "node") if address else m.client.address
        info = m.node_info(who)
        if not info.registered:
            raise ConfigError(f"{who} is not a registered node: `verimarket node register` first")
        t = Table(title=f"node {who}")
        t.add_column("")
        t.add_column("", justify="right")
        free = info.stake - info.locked - info.unbonding
        for k, v in (
            ("stake", info.stake),
            ("locked as collateral", info.locked),
            ("unbonding", info.unbonding),
            ("free", free),
            ("withdrawable earnings", m.withdrawable(who)),
        ):
            t.add_row(k, _eth(v))
        if info.unbonding:
            t.add_row(
                "unbonding ready at",
                time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info.unbonding_ready_at)),
            )
        console.print(t)

    @node_app.command("earnings")
    @friendly
    def node_earnings(
        address: Annotated[str | None, typer.Argument()] = None,
        deployment: DeploymentOpt = None,
        key: KeyOpt = None,
    ) -> None:
        """Jobs settled, earnings and slashes of a node, from the chain's events."""
        from market.chain.events import LogReader

        m = _market(deployment, key, None if address else "showing your node")
        who = _address(address, "node") if address else m.client.address
        d = m.deployment
        reader = LogReader(m.client, {"JobMarket": d.job_market, "NodeRegistry": d.node_registry})
        jobs = paid = slashed = 0
        for ev in reader.fetch(d.start_block, m.client.block_number()):
            if ev.name == "JobFinalized" and ev.args["node"] == who:
                jobs, paid = jobs + 1, paid + int(ev.args["nodePayout"])
            elif ev.name == "NodeSlashed" and ev.args["node"] == who:
                slashed += int(ev.args["amount"])
        console.print(
            f"node {who}: {jobs} jobs settled, earned {_eth(paid)}, "
            f"slashed {_eth(slashed)}, withdrawable now {_eth(m.withdrawable(who))}"
        )

    @node_app.command("withdraw")
    @friendly
    def node_withdraw(deployment: DeploymentOpt = None, key: KeyOpt = None) -> None:
        """Withdraw your earnings (and refunds) from the market."""
        m = _market(deployment, key, "withdrawing")
        amount = m.withdrawable(m.client.address)
        if amount == 0:
            raise ConfigError("nothing to withdraw yet: earnings appear after jobs settle")
        m.withdraw()
        console.print(f"withdrew {_eth(amount)} to {m.client.address}")

    @node_app.command("unbond")
    @friendly
    def node_unbond(
        amount: Annotated[float, typer.Argument(help="ETH to unbond")],
        deployment: DeploymentOpt = None,
        key: KeyOpt = None,
    ) -> None:
        """Start unbonding free stake; `node withdraw-stake` after the unbonding period."""
        m = _market(deployment, key, "unbonding")
        m.request_unbond(int(amount * ETH))
        info = m.node_info(m.client.address)
        console.print(
            f"unbonding {_eth(info.unbonding)}; ready at "
            + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info.unbonding_ready_at))
        )

    @node_app.command("withdraw-stake")
    @friendly
    def node_withdraw_stake(deployment: DeploymentOpt = None, key: KeyOpt = None) -> None:
        """Withdraw stake whose unbonding period has passed."""
        m = _market(deployment, key, "withdrawing stake")
        m.withdraw_unbonded()
        console.print("unbonded stake withdrawn")

    @node_app.command("cache-price")
    @friendly
    def node_cache_price(
        model: Annotated[str, typer.Argument(help="model name or 0x model id")],
        price: Annotated[int, typer.Argument(help="wei per job answered from the cache; 0 stops")],
        deployment: DeploymentOpt = None,
        key: KeyOpt = None,
    ) -> None:
        """Answer repeated jobs of a model from your result cache at this price (docs/cache.md)."""
        from market.chain.result_cache import cache_price_of, set_cache_price

        if price < 0:
            raise ConfigError("the cache price is a number of wei, 0 or more")
        m = _market(deployment, key, "setting a cache price")
        model_id = _model_id(model)
        regular = m.price_of(m.client.address, model_id)
        if regular is None:
            raise ConfigError(
                f"you do not serve {model}; run `verimarket node register --model {model} "
                "--price WEI` first"
            )
        if price > regular:
            raise ConfigError(
                f"the cache price {price} wei is above your price for the model ({regular} wei)"
            )
        set_cache_price(m, model_id, price)
        now = cache_price_of(m, m.client.address, model_id)
        console.print(
            "cache answers stopped"
            if now is None
            else f"repeated jobs of {model} are answered from the cache at {now} wei"
        )

    # ------------------------------------------------------------------ agent
    @agent_app.command("fund")
    @friendly
    def agent_fund(
        agent: Annotated[str, typer.Argument(help="the agent (contract or key) the budget is for")],
        amount: Annotated[float, typer.Option(help="ETH to deposit")],
        max_fee: Annotated[float, typer.Option(help="largest fee per job, ETH")] = 0.01,
        budget: Annotated[float, typer.Option(help="most ETH escrowed per period")] = 1.0,
        period: Annotated[int, typer.Option(help="period length in seconds")] = 86_400,
        model: Annotated[
            list[str] | None, typer.Option("--model", help="allowed models (default: any)")
        ] = None,
        spender: Annotated[
            list[str] | None, typer.Option("--spender", help="extra keys that may spend")
        ] = None,
        deployment: DeploymentOpt = None,
        key: KeyOpt = None,
    ) -> None:
        """Open (or top up) an agent's purpose-bound budget: it can only pay for inference."""
        from market.chain.types import Policy

        m = _market(deployment, key, "funding an agent")
        who = _address(agent, "agent")
        wei = int(amount * ETH)
        if wei <= 0:
            raise ConfigError("--amount must be more than 0")
        acct = m.client.call(m.vault.functions.getAccount(who))
        if acct[0] != "0x0000000000000000000000000000000000000000":
            m.deposit(who, wei)
            console.print(f"topped up {who}'s budget by {_eth(wei)}")
            return
        models = [_model_id(x) for x in model or []]
        policy = Policy(int(max_fee * ETH), int(budget * ETH), period, any_model=not models)
        m.open_account(who, policy, wei, models, [_address(s, "spender") for s in spender or []])
        console.print(
            f"opened {who}'s budget with {_eth(wei)}; "
            f"models: {'any' if not models else len(models)}"
        )

    @agent_app.command("policy")
    @friendly
    def agent_policy(
        agent: Annotated[str, typer.Argument()],
        max_fee: Annotated[float | None, typer.Option(help="largest fee per job, ETH")] = None,
        budget: Annotated[float | None, typer.Option(help="most ETH escrowed per period")] = None,
        period: Annotated[int | None, typer.Option(help="period length in seconds")] = None,
        deployment: DeploymentOpt = None,
        key: KeyOpt = None,
    ) -> None:
        """Show an agent's policy and budget; with options (funder only), change them."""
        from market.chain.types import Policy

        m = _market(deployment, key, None)
        who = _address(agent, "agent")
        acct = m.client.call(m.vault.functions.getAccount(who))
        funder, balance, _start, spent, pending, _ready, pol = acct
        if funder == "0x0000000000000000000000000000000000000000":
            raise ConfigError(f"{who} has no budget: `verimarket agent fund {who} --amount ETH`")
        if any(v is not None for v in (max_fee, budget, period)):
            m = _market(deployment, key, "changing a policy")
            new = Policy(
                int(max_fee * ETH) if max_fee is not None else int(pol[0]),
                int(budget * ETH) if budget is not None else int(pol[1]),
                period if period is not None else int(pol[2]),
                bool(pol[3]),
            )
            m.client.transact(m.vault.functions.setPolicy(who, new.as_tuple()))
            pol = new.as_tuple()
        console.print(
            f"agent {who} (funder {funder}): balance {_eth(int(balance))}, "
            f"spent this period {_eth(int(spent))}, pending withdrawal {_eth(int(pending))}"
        )
        console.print(
            f"policy: max fee/job {_eth(int(pol[0]))}, budget {_eth(int(pol[1]))} "
            f"per {int(pol[2])} s, models: {'any' if pol[3] else 'allow list'}"
        )

    @agent_app.command("watch")
    @friendly
    def agent_watch(
        job_id: Annotated[int, typer.Argument()],
        timeout: Annotated[float, typer.Option(help="seconds to watch")] = 300.0,
        deployment: DeploymentOpt = None,
    ) -> None:
        """Follow a job through its states until it ends."""
        m = _market(deployment, None, None)
        if not 1 <= job_id <= m.job_count():
            raise ConfigError(f"there is no job {job_id} (jobs so far: {m.job_count()})")
        last = None
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            job = m.job(job_id)
            if job.status != last:
                console.print(
                    f"job {job_id}: {job.status.name.lower()}"
                    + (f" (node {job.node})" if job.node != "0x" + "0" * 40 else "")
                )
                last = job.status
            if job.status.terminal:
                return
            time.sleep(0.5)
        raise ConfigError(
            f"job {job_id} still {last.name.lower() if last else '?'} after {timeout} s"
        )

    # ------------------------------------------------------------------ models
    @models_app.command("list")
    @friendly
    def models_list(deployment: DeploymentOpt = None) -> None:
        """Models built here, with their ids and whether the deployment has them registered."""
        from market.config import get_settings
        from worker.generative import built_manifest
        from worker.models.recipes import RECIPES

        market = None
        with contextlib.suppress(ConfigError):
            market = _market(deployment, None, None)
        t = Table(title="models")
        for col in ("name", "model id", "segments", "registered"):
            t.add_column(col)
        for name in RECIPES:  # the classifiers, then generative models (built only when named)
            try:
                man = built_manifest(get_settings().artifacts, name)
            except Exception:  # noqa: BLE001 - a model not built here is shown as such
                t.add_row(name, "(not built: `verimarket models build`)", "", "")
                continue
            reg = (
                "?"
                if market is None
                else ("yes" if market.is_model_registered(man.model_id_bytes) else "no")
            )
            t.add_row(name, man.model_id, str(len(man.segments)), reg)
        console.print(t)

    @models_app.command("register")
    @friendly
    def models_register(
        model: Annotated[str, typer.Argument(help="name of a built model")],
        uri: Annotated[str, typer.Option(help="where its artefacts can be fetched")] = "",
        deployment: DeploymentOpt = None,
        key: KeyOpt = None,
    ) -> None:
        """Register a built model (its artefact hash and segments) in ModelRegistry."""
        from market.chain.types import Segment
        from market.config import get_settings
        from worker.generative import built_manifest

        m = _market(deployment, key, "registering a model")
        man = built_manifest(get_settings().artifacts, model)
        mid = m.register_model(
            man.artifacts_hash_bytes,
            man.output_scale,
            uri or f"model://{man.name}",
            [Segment(*seg) for seg in man.chain_segments()],
        )
        console.print(f"{model} registered as 0x{mid.hex()}")

    @models_app.command("show")
    @friendly
    def models_show(
        model: Annotated[str, typer.Argument(help="name or 0x id")],
        deployment: DeploymentOpt = None,
    ) -> None:
        """A registered model's segments and artefact hashes, as the chain has them."""
        m = _market(deployment, None, None)
        mid = _model_id(model)
        if not m.is_model_registered(mid):
            raise ConfigError(f"model 0x{mid.hex()} is not registered on this deployment")
        info = m.client.call(m.models.functions.getModel(mid))
        segs = m.client.call(m.models.functions.getSegments(mid))
        console.print(
            f"model 0x{mid.hex()}: owner {info[0]}, output scale 2^{info[1]}, "
            f"artefacts 0x{bytes(info[3]).hex()}, uri {info[4]!r}"
        )
        for i, seg in enumerate(segs):
            console.print(
                f"segment {i}: hash 0x{bytes(seg[0]).hex()}  vk 0x{bytes(seg[1]).hex()}  "
                f"verifier {seg[2]}",
                soft_wrap=True,
            )
