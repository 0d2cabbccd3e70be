"""A local, Cekura-compatible HTTP server for tests, demos and benchmarks.

This is a LOCAL SIMULATOR, not the Cekura service: no call is placed, nothing is billed.
It serves the endpoints the plugin uses, over real HTTP on a loopback address only, and
plays each scenario id by a script: how long its runs take and how they end.

Python::

    with Simulator("scenarios.toml") as sim:       # or Simulator([ScenarioScript(101)])
        os.environ["CEKURA_API_URL"] = sim.url      # key: sim.api_key ("sim-key")
        sim.faults.post_429 = 1                     # faults can change at any time
        ...
        assert sim.entries_fired() == 3

Command line (serves until SIGINT/SIGTERM)::

    python -m pytest_cekura_pipecat.simulator --scenarios scenarios.toml [--port 0]

Scenarios file (TOML): one ``[[scenario]]`` table per scenario id::

    [[scenario]]
    id = 101                    # required, integer
    name = "Books a table"      # default "Scenario 101"
    outcome = "pass"            # pass | fail | error | timeout | stuck | cancelled
    seconds = 2                 # creation to terminal status (default 1)

    [[scenario]]
    id = 102
    outcome = "fail"
    reasons = ["The agent never confirmed the booking time."]   # fail: explanation;
                                                                # error/timeout: error_message
    failed_metrics = ["Confirms booking"]   # fail: binary metrics that did not pass
    transcript = "Testing Agent: Hi\\nMain Agent: Hello"         # default: generated

Any other key, a wrong type or a duplicate id is a ``SimulatorConfigError`` whose message is
one line: ``FILE: scenario N: FIELD: MESSAGE``.

Life cycle of a run of ``seconds`` S, by time since creation: pending (< 0.1 S), in_queue
(< 0.2 S), running (< 0.8 S), evaluating (< S), then terminal: pass and fail end
``completed`` (success true / false), error ``failed``, timeout ``timeout``, cancelled
``cancelled``; stuck stays ``running`` until ended through end_call(s).
"""

from ._model import Faults, Outcome, RecordedRequest, ScenarioScript, SimulatorConfigError, Variants
from ._scenarios import load_scenarios
from ._server import Simulator

__all__ = [
    "Faults",
    "Outcome",
    "RecordedRequest",
    "ScenarioScript",
    "Simulator",
    "SimulatorConfigError",
    "Variants",
    "load_scenarios",
]
