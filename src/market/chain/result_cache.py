"""The chain side of the verifiable result cache: a node's cache price per model
(NodeRegistry.setCachePrice / cachePriceOf) and answering an Open job from a Settled
reference job (JobMarket.answerFromCache). See docs/cache.md."""

from __future__ import annotations

from web3.types import TxReceipt

from market.chain.market import Market


def set_cache_price(market: Market, model_id: bytes, price: int) -> TxReceipt:
    """Answer repeated jobs of ``model_id`` from the cache at ``price`` (0: stop)."""
    return market.client.transact(market.nodes.functions.setCachePrice(model_id, price))


def cache_price_of(market: Market, node: str, model_id: bytes) -> int | None:
    """``node``'s cache price for ``model_id``, or None when it offers no cache answers."""
    offered, price = market.client.call(market.nodes.functions.cachePriceOf(node, model_id))
    return int(price) if offered else None


def answer_from_cache(
    market: Market, job_id: int, ref_job_id: int, output: bytes = b"", output_uri: str = ""
) -> TxReceipt:
    """Settle Open job ``job_id`` at once with Settled job ``ref_job_id``'s result."""
    fn = market.jobs.functions.answerFromCache(job_id, ref_job_id, output, output_uri)
    return market.client.transact(fn)


def cache_reference(market: Market, job_id: int) -> int | None:
    """The reference job a cache-answered job was answered from (None: not a cache answer)."""
    logs = market.jobs.events.JobAnsweredFromCache().get_logs(
        argument_filters={"jobId": job_id}, from_block=market.deployment.start_block
    )
    return int(logs[0]["args"]["refJobId"]) if logs else None
