"""``python -m pytest_cekura_pipecat.simulator``: serve the simulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from ._model import OUTCOMES, V1_READS, ScenarioScript, SimulatorConfigError
from ._server import Simulator, check_loopback

EXIT_USAGE = 2
_NOTICE = "(LOCAL SIMULATOR, not the Cekura service)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_cekura_pipecat.simulator",
        description="Serve a LOCAL Cekura API simulator (not the Cekura service) on loopback.",
    )
    parser.add_argument(
        "--scenarios", metavar="FILE", help="scenarios TOML file ([[scenario]] tables)"
    )
    parser.add_argument(
        "--recording",
        metavar="DIR",
        help="answer with a session recorded by --cekura-record=DIR instead of scripts",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port to listen on; 0 picks a free one (default)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--api-key", default="sim-key", help="X-CEKURA-API-KEY to accept (default sim-key)"
    )
    parser.add_argument(
        "--pipecat-cloud-key", default="pcc-sim-key", help="Pipecat Cloud bearer key to accept"
    )
    parser.add_argument(
        "--default-outcome",
        choices=OUTCOMES,
        help="play scenario ids missing from the file with this outcome (default: answer 400)",
    )
    parser.add_argument(
        "--default-seconds",
        type=float,
        default=1.0,
        help="duration of runs played by --default-outcome",
    )
    parser.add_argument(
        "--v1-reads",
        choices=V1_READS,
        default="canonical",
        help="binary metrics on v1 reads: canonical (default), legacy (type/score 5|0), "
        "or removed (v1 results and runs/bulk answer 404); v2 reads are always canonical",
    )
    parser.add_argument(
        "--room-exclusive",
        action="store_true",
        help="refuse (400) a start entry whose room already has a live run",
    )
    parser.add_argument(
        "--unknown-scenario-400",
        choices=("entry", "field"),
        default="entry",
        help="a 400 for an unknown scenario id names the entry (default) or only 'scenarios'",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.recording is not None and (args.scenarios or args.default_outcome):
        parser.error("give --recording DIR, or scripts (--scenarios, --default-outcome): not both")
    if args.recording is None and args.scenarios is None and args.default_outcome is None:
        parser.error("give --scenarios FILE, --default-outcome OUTCOME, or both (or --recording)")
    try:
        check_loopback(args.host)
        simulator = _simulator(args)
        simulator.start()
    except SimulatorConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(
            f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return _serve(simulator)


def _simulator(args: argparse.Namespace) -> Simulator:
    if args.recording is not None:
        return Simulator.from_recording(
            args.recording, api_key=args.api_key, host=args.host, port=args.port
        )
    default = (
        ScenarioScript(id=0, outcome=args.default_outcome, seconds=args.default_seconds)
        if args.default_outcome
        else None
    )
    return Simulator(
        args.scenarios,
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        default_outcome=default,
        pipecat_cloud_key=args.pipecat_cloud_key,
        v1_reads=args.v1_reads,
        room_exclusive=args.room_exclusive,
        unknown_scenario_400=args.unknown_scenario_400,
    )


def _serve(simulator: Simulator) -> int:
    """Serve until SIGINT or SIGTERM."""
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        print(f"cekura simulator listening on {simulator.url} {_NOTICE}", flush=True)
        # wait() with a timeout keeps the main thread responsive to signals on every platform.
        while not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
