"""The shard a CI parallel job is (``--cekura-shard=K/N|auto``), from the CI system's own
variables (GitLab, CircleCI, Buildkite). No I/O beyond reading the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping

SHARD_AUTO = (0, 0)  # what --cekura-shard=auto parses to, until resolved from CI variables


class ShardEnvError(ValueError):
    """A CI system's parallel-job variables are set but make no sense (one line)."""


# (index variable, total variable, index base)
_SHARD_VARIABLES = (
    ("CI_NODE_INDEX", "CI_NODE_TOTAL", 1),  # GitLab parallel:
    ("CIRCLE_NODE_INDEX", "CIRCLE_NODE_TOTAL", 0),  # CircleCI parallelism
    ("BUILDKITE_PARALLEL_JOB", "BUILDKITE_PARALLEL_JOB_COUNT", 0),  # Buildkite parallelism
)


def shard_from_env(env: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """This job's shard as 1-based ``(K, N)`` from GitLab, CircleCI or Buildkite parallel
    job variables; None when none are set. Raises ShardEnvError for nonsense values."""
    env = os.environ if env is None else env
    for index_name, total_name, base in _SHARD_VARIABLES:
        index, total = env.get(index_name), env.get(total_name)
        if index is None or total is None:
            continue
        try:
            k, n = int(index) - base + 1, int(total)
        except ValueError:
            raise ShardEnvError(
                f"--cekura-shard=auto: {index_name}={index!r} {total_name}={total!r} are not integers"
            ) from None
        if not 1 <= k <= n:
            raise ShardEnvError(
                f"--cekura-shard=auto: {index_name}={index} is out of range for {total_name}={total}"
            )
        return k, n
    return None


def resolve_shard(
    shard: tuple[int, int] | None, env: Mapping[str, str] | None = None
) -> tuple[int, int] | None:
    """The shard to run: ``shard`` itself, or for :data:`SHARD_AUTO` the CI system's, or an
    error naming the variables looked for."""
    if shard != SHARD_AUTO:
        return shard
    found = shard_from_env(env)
    if found is None:
        names = ", ".join(f"{i}/{t}" for i, t, _ in _SHARD_VARIABLES)
        raise ShardEnvError(f"--cekura-shard=auto: no parallel job variables set ({names})")
    return found
