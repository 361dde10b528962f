"""SMRL: the sequential Matryoshka schedule, its stages, and the nested export order.

Sizes d_0 = N > d_1 > ... > d_T. Stage t (1..T) trains the pair (d_{t-1}, d_t): the loss is
L(x[S_{t-1}]) + L(x[S_t]), where S_{t-1} (|S_{t-1}| = d_{t-1}) are the output dims kept so
far and S_t is chosen among them by ADS (or as their first d_t, without ADS). Only the
columns of S_{t-1} train; the columns of dims dropped at earlier stages are frozen.

Everything about a stage is static (Python ints and numpy index arrays), so each stage's
train step is compiled once with its sizes and masks baked in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from smec_jax.core import ads


def sizes_for(ladder: Sequence[int], out_dim: int) -> tuple[int, ...]:
    """Validated size chain (N, d_1, ..., d_T) from a config ladder and the output dim N.

    The ladder may start with N itself (the full size) or below it.
    """
    ladder = tuple(int(d) for d in ladder)
    if not ladder:
        raise ValueError("ladder is empty; give sizes such as (384, 256, 128, 64, 32)")
    if any(b >= a for a, b in zip(ladder, ladder[1:], strict=False)):
        raise ValueError(f"ladder {ladder} must be strictly decreasing")
    if ladder[0] > out_dim or ladder[-1] < 1:
        raise ValueError(f"ladder {ladder} must lie within 1..{out_dim} (the compressor's output)")
    return ladder if ladder[0] == out_dim else (out_dim, *ladder)


@dataclasses.dataclass(frozen=True)
class Stage:
    """Static description of stage t.

    Attributes:
      index: t (1-based). d_prev, d_next: the pair of sizes trained.
      kept: (d_prev,) int indices into the N outputs of S_{t-1}.
      earlier: ((size, indices), ...) of the larger sizes fixed by earlier stages (S_0..S_{t-2}),
        for the optional keep-weight term.
      also: for the joint MRL baseline (one stage), the sizes between d_prev and d_next that
        are in the loss too (as prefixes).
    """

    @property
    def loss_sizes(self) -> tuple[int, ...]:
        """The smaller sizes in this stage's loss besides d_prev, largest first."""
        return (*self.also, self.d_next)

    index: int
    d_prev: int
    d_next: int
    kept: np.ndarray
    earlier: tuple[tuple[int, np.ndarray], ...]
    also: tuple[int, ...] = ()  # joint (MRL) schedule: the other smaller sizes in the loss

    def trainable(self, out_dim: int) -> np.ndarray:
        """(N,) bool: the output columns this stage may change (those of S_{t-1})."""
        m = np.zeros((out_dim,), bool)
        m[self.kept] = True
        return m


def kept_sets(
    sizes: Sequence[int],
    logits: Mapping[str, np.ndarray] | None,
    upto: int,
    joint: bool = False,
) -> list[np.ndarray]:
    """S_0, ..., S_upto as index arrays into the N outputs.

    S_0 = all N dims; S_t = S_{t-1}[select(z_t, d_t)] with ADS logits, else the first d_t of
    S_{t-1} (prefix truncation). Each S_t keeps the order of S_{t-1}.

    ``joint`` (the "+ADS only" ablation: one stage, one logit vector z_1 over all N dims):
    S_t = the top d_t of z_1, nested because every size ranks the same logits.
    """
    sets = [np.arange(sizes[0])]
    for t in range(1, upto + 1):
        if logits is None:
            pick = np.arange(sizes[t])
        elif joint:
            sets.append(ads.select(np.asarray(logits[ads.stage_name(1)]), sizes[t]))
            continue
        else:
            pick = ads.select(np.asarray(logits[ads.stage_name(t)]), sizes[t])
        sets.append(sets[-1][pick])
    return sets


def make_stage(t: int, sizes: Sequence[int], logits: Mapping[str, np.ndarray] | None) -> Stage:
    """Stage t, using the (already fixed) selections of stages 1..t-1."""
    if not 1 <= t < len(sizes):
        raise ValueError(f"stage {t} outside 1..{len(sizes) - 1}")
    sets = kept_sets(sizes, logits, t - 1)
    return Stage(
        index=t,
        d_prev=sizes[t - 1],
        d_next=sizes[t],
        kept=sets[t - 1],
        earlier=tuple((sizes[j], sets[j]) for j in range(t - 1)),
    )


def joint_stage(sizes: Sequence[int]) -> Stage:
    """The single stage of MRL (the ablation baseline): every size trained at once, as prefixes
    of the N outputs, all columns trainable."""
    return Stage(
        index=1,
        d_prev=sizes[0],
        d_next=sizes[-1],
        kept=np.arange(sizes[0]),
        earlier=(),
        also=tuple(sizes[1:-1]),
    )


def nested_order(sets: Sequence[np.ndarray]) -> np.ndarray:
    """Permutation of the N outputs so that every S_t is a prefix: S_T, S_{T-1} \\ S_T, ..., S_0 \\ S_1."""
    order: list[int] = []
    taken: set[int] = set()
    for s in reversed(sets):
        new = [int(i) for i in s if int(i) not in taken]
        order += new
        taken.update(new)
    return np.asarray(order, dtype=np.int64)
