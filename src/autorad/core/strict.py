"""The one strict comparison of a saved state with what a model expects (checkpoints, encoder weights, learners,
preprocessors): missing keys, unexpected keys and wrong shapes are a :class:`CheckpointError` that names them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from autorad.core.errors import CheckpointError


def few(items: Sequence[str], n: int = 6) -> str:
    """``a, b, c ... (+4 more)``."""
    return ", ".join(items[:n]) + (f" ... (+{len(items) - n} more)" if len(items) > n else "")


def check_state(got: Mapping[str, Iterable[int]], expected: Mapping[str, Iterable[int] | None], what: str) -> None:
    """Compare key -> shape maps; an ``expected`` shape of None accepts any shape."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {few(unexpected)}")
    shapes = [f"key {k} has shape {list(got[k])}, expected {list(want)}" for k, want in sorted(expected.items())
              if want is not None and k in got and list(got[k]) != list(want)]
    if shapes:
        problems.append(few(shapes, 3))
    if problems:
        raise CheckpointError(f"{what} does not match: " + "; ".join(problems))


def shapes_of(tensors: Mapping[str, object]) -> dict[str, list[int]]:
    """key -> shape of arrays or tensors."""
    return {k: list(v.shape) for k, v in tensors.items()}
