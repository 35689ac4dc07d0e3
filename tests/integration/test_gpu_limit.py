"""The global `gpu` limit on a real Prefect server: created from pools.yaml's GPU runners, a CUDA
training holds a slot while it runs, CPU never does, a missing limit is one line."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from deployments.automations import apply_gpu_limit
from tasks.core.errors import ConfigError
from tasks.core.gpu import GPU_LIMIT, gpu_slot


async def _apply(slots: int) -> str:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await apply_gpu_limit(client, slots)


async def _read() -> object | None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        try:
            return await client.read_global_concurrency_limit_by_name(GPU_LIMIT)
        except ObjectNotFound:
            return None


async def _delete() -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        with contextlib.suppress(ObjectNotFound):
            await client.delete_global_concurrency_limit_by_name(GPU_LIMIT)


def test_gpu_limit_is_created_updated_and_held_only_by_cuda_training():
    asyncio.run(_delete())
    try:
        assert asyncio.run(_apply(2)) == "created"
        assert asyncio.run(_apply(2)) == "unchanged"
        assert asyncio.run(_apply(1)) == "updated"
        assert asyncio.run(_read()).limit == 1
        with gpu_slot("cuda", strict=True):
            assert asyncio.run(_read()).active_slots == 1
        assert asyncio.run(_read()).active_slots == 0
        with gpu_slot("cpu", strict=True):
            assert asyncio.run(_read()).active_slots == 0
    finally:
        asyncio.run(_delete())


def test_cuda_training_without_the_limit_in_strict_mode_is_one_line():
    asyncio.run(_delete())
    with pytest.raises(ConfigError) as err, gpu_slot("cuda", strict=True):
        pytest.fail("trained without a gpu slot")
    assert "mlops pools apply" in str(err.value) and "\n" not in str(err.value)
