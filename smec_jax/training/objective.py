"""The stage objective: a sum of small public terms, one per idea of the paper or a peer.

  L_t = L_rank (sizes d_{t-1} and d_t; every ladder size for the joint schedule)
        + keep_weight * L_rank (the larger sizes fixed at earlier stages; 0 in the paper)
        + alpha * L_S-XBM (memory neighbours, every size in the loss)
        + Matryoshka-Adaptor's L_rec, L_topk, L_pair (when ``adaptor.enabled``)
        + distill_weight * L_distill (listwise KL to the full-size ranking of unlabelled
          queries; every size of the stage)

Label-free training (``train.supervised = False``) drops the rank terms and weights the
S-XBM term 1. With an asymmetric compressor (``model.asymmetric``) the rank, keep and
distillation terms map queries by the query map; the S-XBM term compares stored vectors,
so it maps every sample and neighbour (queries too) by the document map. Each term takes
the stage's size masks: ``None`` for size d_{t-1} (all kept dims), then one (d_{t-1},) mask
per smaller size, drawn by ADS (hard Gumbel top-k with a straight-through relaxed
gradient) or the prefixes of the kept dims.

:func:`make_loss_fn` assembles the terms for one stage; :mod:`smec_jax.training.train` differentiates
it. Brute-force checks of every term are in ``tests/test_losses.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from smec_jax import parallel
from smec_jax.core import ads, codes, losses, memory, model, smrl
from smec_jax.core.retrieval import l2_normalize

_NEG = -1e9  # the logit of a left-out candidate


@dataclasses.dataclass(frozen=True)
class AdaptorLoss:
    """Matryoshka-Adaptor's loss weights (``config.adaptor``)."""

    topk: int
    topk_weight: float
    pair_weight: float
    rec_weight: float


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The settings the traced loss reads: a frozen view of the config, built once per stage
    by :meth:`from_config`, so no traced code reads the mutable ConfigDict."""

    supervised: bool
    steps_per_stage: int
    score_scale: float
    full_weight: float
    keep_weight: float
    quantize: str
    ads_enabled: bool
    tau_start: float
    tau_end: float
    memory_enabled: bool
    memory_k: int
    memory_alpha: float
    memory_sharded: bool
    neighbour_mode: str
    distill_weight: float
    distill_temperature: float
    distill_source_weight: float
    adaptor: AdaptorLoss | None  # None: Matryoshka-Adaptor's losses off

    @classmethod
    def from_config(cls, cfg) -> LossConfig:
        t, m, a, ad = cfg.train, cfg.memory, cfg.ads, cfg.adaptor
        return cls(
            supervised=t.supervised,
            steps_per_stage=t.steps_per_stage,
            score_scale=t.score_scale,
            full_weight=t.full_weight,
            keep_weight=t.keep_weight,
            quantize=t.quantize,
            ads_enabled=a.enabled,
            tau_start=a.tau_start,
            tau_end=a.tau_end,
            memory_enabled=m.enabled,
            memory_k=m.k,
            memory_alpha=m.alpha,
            memory_sharded=m.sharded,
            neighbour_mode=m.neighbour_mode,
            distill_weight=t.distill_weight,
            distill_temperature=t.distill_temperature,
            distill_source_weight=t.distill_source_weight,
            adaptor=(
                AdaptorLoss(ad.topk, ad.topk_weight, ad.pair_weight, ad.rec_weight)
                if ad.enabled
                else None
            ),
        )


def stage_masks(stage: smrl.Stage, ads_enabled: bool, z: jax.Array | None, rng, tau) -> tuple:
    """(None, mask_1, ...): all kept dims, then the mask of each smaller size in the loss.

    With ADS, one noise draw serves every size, so on the joint schedule the masks nest.
    """
    if ads_enabled:
        smaller = tuple(ads.gumbel_topk_mask(rng, z, d, tau) for d in stage.loss_sizes)
    else:
        smaller = tuple(
            jnp.asarray(np.arange(stage.d_prev) < size, jnp.float32) for size in stage.loss_sizes
        )
    return (None, *smaller)


def cos_matrix(a_nd: jax.Array, b_md: jax.Array, mask_d=None) -> jax.Array:
    """(n, m) cosines of the rows of a and b, restricted to the dims of ``mask_d``."""
    if mask_d is not None:
        a_nd, b_md = a_nd * mask_d, b_md * mask_d
    return l2_normalize(a_nd) @ l2_normalize(b_md).T


def _rank_args(batch) -> tuple:
    return (batch["grades"], batch["valid"], batch["pos_idx"], batch["pos_ok"])


def rank_term(yq, yd, batch, masks: Sequence, weights: Sequence[float], scale: float):
    """sum over sizes m of w_m * L_rank(scale * cos at size m) for one batch."""
    total = 0.0
    for mask, w in zip(masks, weights, strict=True):
        total = (
            total + w * losses.rank_loss(scale * cos_matrix(yq, yd, mask), *_rank_args(batch))[0]
        )
    return total


QUANTIZERS = ("none", "binary", "int8", "int4", "int2")


def quantized(y_nd: jax.Array, quantize: str) -> jax.Array:
    """The codes ``y_nd`` would be served as, decoded, with no gradient of their own.

    ``binary``: the signs. ``int8``: per-dim ranges over the rows of ``y_nd``, coded and
    decoded as :mod:`smec_jax.core.codes` does (faiss's 8-bit scalar quantizer). ``int4`` /
    ``int2``: 16 / 4 equal-mass bins per dim, cut at the quantiles of the rows and decoded
    as the bin's mean (empty bins: the nearest edge), as :func:`smec_jax.core.codes.calibrate`
    fits them. The calibration is fitted on the rows at hand (the batch, the memory): the
    training-time stand-in for the corpus calibration the served codes use. It is taken on
    the unnormalised outputs of all kept dims, whereas the served codes of a size are those
    of its normalised prefix; the rows of empty memory slots take part early in training.
    """
    y = jax.lax.stop_gradient(y_nd)
    if quantize == "binary":
        return jnp.sign(y)
    if quantize == "int8":
        vmin = y.min(axis=0)
        vdiff = jnp.maximum(y.max(axis=0) - vmin, codes.MIN_RANGE)
        code = jnp.minimum(jnp.floor(jnp.clip((y - vmin) / vdiff, 0.0, 1.0) * 255.0), 255.0)
        return vmin + (code + 0.5) / 255.0 * vdiff
    n_levels = codes.LEVELS[quantize]
    edges = jnp.quantile(y, jnp.arange(1, n_levels) / n_levels, axis=0)  # (L - 1, d)
    level = sum((y > e).astype(jnp.int32) for e in edges)  # edges exceeded, (n, d)
    out = jnp.zeros_like(y)
    for lv in range(n_levels):
        sel = level == lv
        count = sel.sum(axis=0)
        mean = jnp.where(sel, y, 0.0).sum(axis=0) / jnp.maximum(count, 1)
        cent = jnp.where(count > 0, mean, edges[min(lv, n_levels - 2)])
        out = jnp.where(sel, cent, out)
    return out


def outputs(params, x_bd, cols, quantize: str = "none"):
    """The compressor's outputs ``cols`` for ``x_bd``; with ``quantize`` other than "none",
    their decoded codes (:func:`quantized`) with a straight-through gradient (the identity),
    so every term sees the codes it will be served as while the float weights train
    (quantization-aware training)."""
    y = model.apply_cols(params, x_bd, cols)
    if quantize != "none":
        y = y + jax.lax.stop_gradient(quantized(y, quantize) - y)
    return y


def distill_term(
    params,
    batch,
    kept,
    masks,
    temperature: float,
    quantize: str = "none",
    source_weight: float = 0.0,
):
    """Listwise distillation of the full-size ranking, summed over sizes: the mean over the
    unlabelled queries ``u_q`` of KL(p || p_m), where p and p_m are softmaxes at
    ``temperature`` of the full-size and the size-m compressed cosines to the candidates
    ``u_d`` (repeated candidates, ``~u_valid``, left out). No judgment is read.

    With ``source_weight`` w > 0 (inverse cloze), a query's teacher is (1 - w) p + w on the
    document it was made from (candidate ``u_src``; queries with -1 keep p). A query that is
    itself a document (``u_self`` >= 0) leaves that document out, for teacher and student.
    """
    valid = batch["u_valid"][None, :]
    if "u_self" in batch:
        valid = valid & (jnp.arange(valid.shape[1])[None, :] != batch["u_self"][:, None])
    log_p = teacher_log_probs(cos_matrix(batch["u_q"], batch["u_d"]), valid, temperature)
    if source_weight:
        p = jnp.exp(log_p)
        src = batch["u_src"][:, None]
        at_src = (jnp.arange(p.shape[1])[None, :] == src) & (src >= 0)
        w = jnp.where(src >= 0, jnp.float32(source_weight), 0.0)
        # log((1 - w) p + w [at source]), exact away from the source too: log(1 - w) + log p
        log_p = jnp.where(at_src, jnp.log((1 - w) * p + w), jnp.log1p(-w) + log_p)
    yq = outputs(model.query_side(params), batch["u_q"], kept, quantize)
    yd = outputs(params, batch["u_d"], kept, quantize)
    total = 0.0
    for mask in masks:
        total = total + listwise_kl(log_p, cos_matrix(yq, yd, mask), valid, temperature)
    return total


def teacher_log_probs(cos_nm: jax.Array, valid, temperature: float) -> jax.Array:
    """Log-softmax over the ``valid`` candidates of the full-size cosines at ``temperature``
    (invalid candidates get probability 0)."""
    return jax.nn.log_softmax(jnp.where(valid, cos_nm / temperature, _NEG), axis=-1)


def listwise_kl(log_p: jax.Array, student_cos: jax.Array, valid, temperature: float):
    """The mean over queries of KL(p || q) over the ``valid`` candidates, where q is the
    softmax of the student's cosines at ``temperature``."""
    log_q = jax.nn.log_softmax(jnp.where(valid, student_cos / temperature, _NEG), axis=-1)
    return jnp.mean(jnp.sum(jnp.where(valid, jnp.exp(log_p) * (log_p - log_q), 0.0), axis=-1))


def keep_term(params, batch, earlier: Sequence[tuple[int, np.ndarray]], scale: float):
    """L_rank at the larger sizes fixed by earlier stages (their kept columns S_0..S_{t-2}):
    the option that keeps those sizes from drifting once they leave the paper's loss."""
    total = 0.0
    for _, cols in earlier:
        s = cos_matrix(
            model.apply_cols(model.query_side(params), batch["q"], cols),
            model.apply_cols(params, batch["d"], cols),
        )
        total = total + losses.rank_loss(scale * s, *_rank_args(batch))[0]
    return total


def neighbour_outputs(
    params, entries_qd, idx_nk, kept, mode: str = "auto", weights=(), quantize: str = "none"
):
    """Compressed outputs (n, k, d) of memory neighbours, and their squared norms under each
    dim weighting in ``weights`` ((n, k) each), the cheaper of two ways.

    "gather": gather the n*k neighbours, then compress them: n*k*D*d multiply-adds.
    "memory": compress the whole memory once (Q*D*d), then gather outputs; the norms are
    then taken on the (Q, d) outputs and only gathered, never on (n, k, d) tensors.
    Both are exact; "auto" picks the cheaper statically (at the reference shape, n = 1152
    samples x k = 10 > Q = 5000, so compressing the memory costs 2.3x less).
    """
    n, k = idx_nk.shape
    q, _ = entries_qd.shape
    if mode == "gather" or (mode == "auto" and n * k < q):
        out = outputs(params, entries_qd[idx_nk.reshape(-1)], kept, quantize).reshape(n, k, -1)
        sq = out * out
        return out, [jnp.einsum("nkd,d->nk", sq, w) for w in weights]
    ym = outputs(params, entries_qd, kept, quantize)  # (Q, d)
    sq = ym * ym
    return ym[idx_nk], [(sq @ w)[idx_nk] for w in weights]


def memory_neighbours(mem, x_nd, ids_n, keep_n, k, mode="auto", mesh=None, lists=None):
    """Each sample's top-k memory entries by original cosine: slots (n, k), original
    cosines (n, k), weights (n, k) float32 (the number of memory entries each
    (sample, neighbour) stands for; 0 = none, and for samples not kept), and whether the
    full search ran (a float32 0/1; list mode falls back to it).

    Everything here is a function of frozen original embeddings and ids, so it is found
    outside the differentiated path (no gradient, no residuals): the loss then takes one
    path whichever way the neighbours were found. With ``mesh``, the memory is sharded along
    its queue axis (per-shard top-k, then merge). ``mode="list"`` reads the neighbours from
    precomputed neighbour ``lists`` (:func:`memory.neighbours_from_lists`) and falls back to
    the full search in a step where some kept sample's list runs short.
    """
    x_nd = jax.lax.stop_gradient(x_nd)

    def searched(_):
        if mesh is None:
            idx, sim, ok = memory.neighbours(mem, x_nd, ids_n, k)
        else:
            idx, sim, ok = memory.neighbours_sharded(mem, x_nd, ids_n, k, mesh, parallel.DATA)
        return idx.astype(jnp.int32), sim, ok.astype(jnp.int32)

    if mode == "list":
        slots, sim, count, enough = memory.neighbours_from_lists(mem, ids_n, *lists, k)
        listed = jnp.all(enough | ~keep_n)
        idx, sim, w = jax.lax.cond(listed, lambda _: (slots, sim, count), searched, None)
        full = 1.0 - listed.astype(jnp.float32)
    else:
        (idx, sim, w), full = searched(None), jnp.float32(1.0)
    return idx, sim, (w * keep_n[:, None]).astype(jnp.float32), full


def sxbm_term(
    mem,
    x_nd,
    ids_n,
    keep_n,
    y_nd,
    params,
    kept,
    masks,
    k,
    mode="auto",
    mesh=None,
    quantize="none",
    lists=None,
):
    """S-XBM loss of the samples against their memory neighbours
    (:func:`memory_neighbours`), summed over sizes: :func:`sxbm_loss`."""
    nbrs = memory_neighbours(mem, x_nd, ids_n, keep_n, k, mode, mesh, lists)
    return sxbm_loss(mem.entries, nbrs, y_nd, params, kept, masks, mode, quantize)


def sxbm_loss(entries_qd, nbrs, y_nd, params, kept, masks, mode="auto", quantize="none"):
    """The S-XBM loss given the neighbours ``nbrs`` of :func:`memory_neighbours`.

    Cosines under a dim mask m are computed as <a, m^2 b> / sqrt(|a|^2_{m^2} |b|^2_{m^2}),
    equal in value and gradient to cos(a * m, b * m) but without materialising a masked and
    a normalised copy of the (n, k, d) neighbour tensor for every size: on CPU those
    elementwise passes, not the matmuls, dominated the S-XBM term.
    """
    idx, orig_sim, count, _ = nbrs
    d = y_nd.shape[1]
    weights = [jnp.ones((d,), y_nd.dtype) if m is None else m * m for m in masks]
    nbr_mode = "memory" if mode == "list" else mode
    y_nbr, nbr_sq = neighbour_outputs(params, entries_qd, idx, kept, nbr_mode, weights, quantize)
    return _sxbm_sum(y_nd, y_nbr, nbr_sq, weights, orig_sim, count)


def _sxbm_sum(y_nd, y_nbr, nbr_sq, weights, orig_sim, count):
    """Sum over sizes of the mean |orig - compressed| cosine gap, each (sample, neighbour)
    weighted by the number of memory entries it stands for (``count``)."""
    total = 0.0
    for w, b_sq in zip(weights, nbr_sq, strict=True):
        num = jnp.einsum("nd,nkd->nk", y_nd * w, y_nbr)
        a_sq = (y_nd * y_nd) @ w
        comp_sim = num * jax.lax.rsqrt(jnp.maximum(a_sq[:, None] * b_sq, 1e-24))
        total = total + losses.unsup_loss(orig_sim, comp_sim, count)
    return total


def adaptor_terms(x_nd, y_nd, keep_n, masks, ad: AdaptorLoss) -> list[tuple[str, float, jax.Array]]:
    """Matryoshka-Adaptor's losses on the batch's own samples, as (name, weight, value):
    L_rec always, L_topk and L_pair where their weight is non-zero."""
    terms = [
        (
            "rec",
            ad.rec_weight,
            losses.reconstruction(x_nd * keep_n[:, None], y_nd * keep_n[:, None]),
        )
    ]
    if ad.topk_weight:
        terms.append(
            (
                "topk",
                ad.topk_weight,
                losses.similarity_preservation(x_nd, y_nd, masks, ad.topk, keep_n),
            )
        )
    if ad.pair_weight:
        terms.append(
            (
                "pair",
                ad.pair_weight,
                losses.similarity_preservation(x_nd, y_nd, masks, None, keep_n),
            )
        )
    return terms


def make_loss_fn(stage: smrl.Stage, cfg, out_dim: int, mesh, lists=None) -> Callable:
    """The stage's loss ``(tree, state, batch, rng) -> (loss, (metrics, x, ids, keep))``,
    with ``tree = {"params", "ads"}``; ``x, ids, keep`` are the samples to enqueue. ``cfg``
    is read here, once, into a :class:`LossConfig`; the traced function reads only that."""
    lc = LossConfig.from_config(cfg)
    kept, name = stage.kept, ads.stage_name(stage.index)
    trainable_n = stage.trainable(out_dim)
    supervised, steps = lc.supervised, lc.steps_per_stage
    scale = lc.score_scale
    size_weights = (lc.full_weight,) + (1.0,) * len(stage.loss_sizes)
    earlier = stage.earlier if lc.keep_weight else ()
    sharded_mesh = mesh if lc.memory_sharded else None
    quant = lc.quantize

    def loss_fn(tree, state, batch, rng):
        params = model.freeze_columns(tree["params"], trainable_n)
        view, cols = model.column_view(params, kept)  # the stage's kept columns, once
        tau = ads.tau_schedule(state.stage_step, steps, lc.tau_start, lc.tau_end)
        masks = stage_masks(stage, lc.ads_enabled, tree["ads"].get(name), rng, tau)
        metrics = {"tau": tau}
        if supervised:
            x = jnp.concatenate([batch["q"], batch["d"]])  # queries and documents: one matmul
            ids = jnp.concatenate([batch["q_ids"], batch["d_ids"]])
            keep = jnp.concatenate([jnp.ones(batch["q_ids"].shape, bool), batch["d_keep"]])
            y = outputs(view, x, cols, quant)
            yq, yd = y[: batch["q"].shape[0]], y[batch["q"].shape[0] :]
            if model.is_asymmetric(view):  # y keeps the document map's queries for S-XBM
                yq = outputs(model.query_side(view), batch["q"], cols, quant)
            rank = rank_term(yq, yd, batch, masks, size_weights, scale)
            if earlier:
                metrics["keep"] = keep_term(params, batch, earlier, scale)
                rank = rank + lc.keep_weight * metrics["keep"]
            metrics["rank"] = rank
        else:
            x, ids, keep = batch["x"], batch["ids"], batch["keep"]
            y = outputs(view, x, cols, quant)
            rank = 0.0
        if lc.memory_enabled:
            mode = lc.neighbour_mode
            nbrs = memory_neighbours(
                state.memory, x, ids, keep, lc.memory_k, mode, sharded_mesh, lists
            )
            if mode == "list":  # 1 in a step where some list ran short (the full search ran)
                metrics["list_miss"] = nbrs[3]
            unsup = sxbm_loss(state.memory.entries, nbrs, y, view, cols, masks, mode, quant)
        else:
            unsup = jnp.zeros(())
        metrics["unsup"] = unsup
        loss = rank + (lc.memory_alpha if supervised else 1.0) * unsup
        if lc.distill_weight:
            metrics["distill"] = distill_term(
                view,
                batch,
                cols,
                masks,
                lc.distill_temperature,
                quant,
                lc.distill_source_weight,
            )
            loss = loss + lc.distill_weight * metrics["distill"]
        if lc.adaptor is not None:
            for term, weight, value in adaptor_terms(x, y, keep, masks, lc.adaptor):
                metrics[term] = value
                loss = loss + weight * value
        return loss, (metrics, x, ids, keep)

    return loss_fn
