"""The scenario and billing endpoints of the local server (issue 31 item 7), read by the
official SDK and CLI and by the plugin's own client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_cekura_pipecat._api.client import CekuraClient, HttpPolicy
from pytest_cekura_pipecat._errors import ApiError
from pytest_cekura_pipecat._redact import Redactor
from pytest_cekura_pipecat.simulator import ScenarioScript, Simulator, SimulatorConfigError

cekura = pytest.importorskip("cekura")

SCRIPTS = [
    ScenarioScript(
        id=101,
        name="Book a table",
        agent=5,
        folder_path="Booking/",
        tags=("smoke", "booking"),
        metrics=(1, 2),
        max_duration=120,
        version="v2",
    ),
    ScenarioScript(
        id=102, name="Cancel a booking", agent=5, folder_path="Booking/Cancel/", tags=("booking",)
    ),
    ScenarioScript(
        id=103, name="Bookings report", agent=5, folder_path="Bookingsx/", tags=("smoke",)
    ),
    ScenarioScript(id=201, name="Support", agent=6, folder_path="Support/", tags=("smoke",)),
]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SCRIPTS, credits_remaining=42.5) as running:
        yield running


def ids(items: list[dict[str, object]]) -> list[object]:
    return [item["id"] for item in items]


def test_the_sdk_reads_scenarios_and_billing(sim: Simulator) -> None:
    with cekura.Cekura(api_key=sim.api_key, base_url=sim.url) as sdk:
        assert sdk.billing.info()["credits_remaining"] == 42.5
        one = sdk.scenarios.get(101)
        assert (one["name"], one["agent"], one["folder_path"]) == ("Book a table", 5, "Booking/")
        assert (one["tags"], one["metrics"], one["max_duration"], one["version"]) == (
            ["smoke", "booking"],
            [1, 2],
            120,
            "v2",
        )
        assert ids(sdk.scenarios.list(agent_id=5)["results"]) == [101, 102, 103]
        # A folder holds what is under it, never a sibling that shares its prefix.
        assert ids(sdk.scenarios.list(agent_id=5, folder_path="Booking")["results"]) == [101, 102]
        assert ids(sdk.scenarios.list(tags="smoke")["results"]) == [101, 103, 201]
        both = sdk.scenarios.list(tags="smoke,booking", tag_filter_type="all")
        assert ids(both["results"]) == [101]
        with pytest.raises(cekura.NotFoundError):
            sdk.scenarios.get(999)


def test_the_cli_pages_through_the_list(sim: Simulator, tmp_path: Path) -> None:
    from test_official_sdk import cli

    listed = cli(sim, tmp_path, "scenarios", "list", "--all", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert ids(json.loads(listed.stdout)) == [101, 102, 103, 201]
    paged = [r for r in sim.requests if r.path.startswith("/test_framework/v1/scenarios")]
    assert paged


def test_a_page_links_to_the_next(sim: Simulator) -> None:
    with cekura.Cekura(api_key=sim.api_key, base_url=sim.url) as sdk:
        first = sdk.scenarios.list(page_size=3)
    assert first["count"] == 4 and ids(first["results"]) == [101, 102, 103]
    assert first["next"].endswith("page=2") and first["previous"] is None


def test_a_bad_tag_filter_is_a_400_naming_it(sim: Simulator) -> None:
    with (
        cekura.Cekura(api_key=sim.api_key, base_url=sim.url) as sdk,
        pytest.raises(cekura.APIError, match="tag_filter_type"),
    ):
        sdk.scenarios.list(tags="smoke", tag_filter_type="some")


def test_a_scenario_script_checks_its_catalogue_fields() -> None:
    with pytest.raises(SimulatorConfigError, match="max_duration: must be a number of seconds"):
        ScenarioScript(id=1, max_duration=5)
    with pytest.raises(SimulatorConfigError, match="tags: must be a list of strings"):
        ScenarioScript(id=1, tags=(1,))  # type: ignore[arg-type]


def client(sim: Simulator) -> CekuraClient:
    return CekuraClient(sim.url, sim.api_key, Redactor(), HttpPolicy(retry_window=5))


def test_the_client_reads_the_catalogue(sim: Simulator) -> None:
    async def main() -> None:
        api = client(sim)
        try:
            one = await api.scenario(101)
            assert (one.agent, one.tags, one.metrics, one.max_duration) == (
                5,
                ("smoke", "booking"),
                (1, 2),
                120,
            )
            got = await api.scenarios(agent_id=5, folder_path="Booking/", tags=("booking",))
            assert [s.id for s in got] == [101, 102]
            assert (await api.billing()).credits_remaining == 42.5
            with pytest.raises(ApiError) as info:
                await api.scenario(999)
            assert info.value.status == 404
        finally:
            await api.aclose()

    asyncio.run(main())


def test_the_client_follows_every_page() -> None:
    many = [ScenarioScript(id=i, agent=5) for i in range(1, 251)]
    with Simulator(many) as sim:

        async def main() -> list[int]:
            api = client(sim)
            try:
                return [s.id for s in await api.scenarios(agent_id=5)]
            finally:
                await api.aclose()

        assert asyncio.run(main()) == list(range(1, 251))
        pages = [r for r in sim.requests if r.path.startswith("/test_framework/v1/scenarios")]
        assert len(pages) == 3
