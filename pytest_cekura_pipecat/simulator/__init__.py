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
        [--v1-reads canonical|legacy|removed] [--room-exclusive]
        [--unknown-scenario-400 entry|field]

Routes (each with and without the trailing slash; key in ``X-CEKURA-API-KEY``):
start ``POST /test_framework/v1/scenarios/run_scenarios_pipecat/`` and its aliases
``v1/scenarios-external/...`` and ``v2/scenarios/...`` (JSON, urlencoded or multipart body),
``POST v1/scenarios-external/run_scenarios_pipecat_v2/`` (the official CLI's pipecat mode),
``GET v{1,2}/results/{id}/``, ``GET v{1,2}/results/`` (paginated list), ``GET
v{1,2}/runs/bulk/`` and ``v{1,2}/runs-external/bulk/`` (``run_ids`` or ``ids``), ``GET
v{1,2}/runs-external/{id}/``, ``POST v{1,2}/{runs,runs-external}/{id}/end_call/``, ``POST
v{1,2}/{results,results-external}/{id}/end_calls/``, ``GET v{1,2}/aiagents/{id}/``, and
``GET /recordings/{run id}.wav`` (a run's ``voice_recording_url``: a short silent WAV, no
key asked, as a signed link).
Switches and faults: see ``Simulator`` and ``Faults``.

Scenarios file (TOML): one ``[[scenario]]`` table per scenario id::

    [[scenario]]
    id = 101                    # required, integer
    name = "Books a table"      # default "Scenario 101"
    outcome = "pass"            # pass | fail | error | timeout | stuck | cancelled |
                                # rubric_fail | never_connected | evaluated_nothing |
                                # pending_forever | no_verdict
    seconds = 2                 # creation to terminal status (default 1)

    [[scenario]]
    id = 103
    phases = { in_queue = 1, scaling_up = 2, in_progress = 25, evaluating = 2 }
                                # instead of seconds: each status and how long it lasts
    verdict_after = 3           # seconds the run reads terminal before its verdict lands
    early_success = "false"     # success meanwhile: "null" (default) | "false"

    [[scenario]]
    id = 102
    outcome = "fail"
    reasons = ["The agent never confirmed the booking time."]   # fail: explanation;
                                                                # error/timeout: error_message
    failed_metrics = ["Confirms booking"]   # fail: binary metrics that did not pass
    transcript = "Testing Agent: Hi\\nMain Agent: Hello"         # default: generated
    review = "failure"          # human-reviewed: "" (default) | success | failure
    expected_outcome_as_string = true    # serve expected_outcome as a plain string
    non_finite = "duration"     # "" | duration (Infinity) | score (NaN): non-strict JSON
    numeric_metrics = { "Latency (ms)" = 1234 }
    enum_metrics = { "Call outcome" = "escalated" }
    score = 90                  # expected-outcome score (default: 100 pass, 40 fail)

Any other key, a wrong type or a duplicate id is a ``SimulatorConfigError`` whose message is
one line: ``FILE: scenario N: FIELD: MESSAGE``.

Life cycle of a run of ``seconds`` S, by time since creation: pending (< 0.1 S), in_queue
(< 0.15 S), scaling_up (< 0.2 S), in_progress (< 0.8 S), evaluating (< S), then terminal:
pass and fail end ``completed`` (success true / false), error ``failed``, timeout
``timeout``, cancelled ``cancelled``; stuck reads ``running`` once out of the queue, until
ended through end_call(s). rubric_fail, never_connected, evaluated_nothing and no_verdict
(success null) end ``completed``; pending_forever stays ``pending`` and its result turns
``failed`` (see ``ScenarioScript``). ``phases`` replaces those shares by durations.

A result ends only once every run has ended, its verdict landed (Cekura's newer statement;
``early_completed`` plays the older reading, ``completed`` once any run completed): until
then it reads pending, in_queue or scaling_up while no run left the queue, evaluating once
every call is over, running otherwise; then ``completed`` if any run completed, else
``cancelled`` or ``timeout`` when every run ended so, else ``failed``. Its ``ai_summary``
and ``failed_reasons`` are written ``ai_summary_after`` seconds after the end
(``ai_summary_status`` pending, then completed or skipped_no_failures).
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
