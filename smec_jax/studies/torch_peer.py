"""A plain PyTorch implementation of the reference SMEC train step, for the speed benchmark.

The same work as :func:`smec_jax.studies.profiling.reference_step`'s step (stage 1: D = N, sizes
d_prev = N and d_next = N / 2): compress the batch, an ADS mask (hard Gumbel top-k forward,
k successive softmaxes backward), the graded rank loss at both sizes, the S-XBM term (exact
top-k of every sample among the memory entries by original cosine, the memory compressed
through the kept columns, cosine gaps at both sizes), backward, Adam on the compressor and
the logits, the post-optimizer column mask, and the FIFO enqueue. Written the way a PyTorch
user would write it, eager or ``torch.compile``d; not used for training.
"""

from __future__ import annotations

import statistics
import time


def make_step(
    dim=768,
    b=128,
    docs_per_query=8,
    mem_size=5000,
    k=10,
    scale=20.0,
    alpha=0.1,
    tau=0.5,
    compile_step=False,
    seed=0,
    ads=True,
):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    c = b * docs_per_query
    d_next = dim // 2
    unit = lambda n: F.normalize(torch.randn(n, dim), dim=1)
    q, d = unit(b), unit(c)
    grades = torch.zeros(b, c)
    pos_idx = torch.zeros(b, 2, dtype=torch.long)
    for i in range(b):
        grades[i, i * docs_per_query] = 1
        pos_idx[i, 0] = i * docs_per_query
    pos_ok = torch.zeros(b, 2, dtype=torch.bool)
    pos_ok[:, 0] = True
    mem = {"x": unit(mem_size), "ids": torch.arange(mem_size) + 2 * 10**6, "ptr": 0}
    ids = torch.cat([torch.arange(b) + 10**6, torch.arange(c)])
    w = torch.eye(dim, requires_grad=True)
    bias = torch.zeros(dim, requires_grad=True)
    z = torch.zeros(dim, requires_grad=True)
    opt = torch.optim.Adam([w, bias, z], lr=1e-3)

    def relaxed_topk(s, kk, t):
        khot = torch.zeros_like(s)
        for _ in range(kk):
            onehot = torch.softmax(s / t, dim=0)
            khot = khot + onehot
            s = s + torch.log(torch.clamp(1.0 - onehot, min=1e-20))
        return khot

    def rank_loss(scores):
        s_pos = torch.gather(scores, 1, pos_idx)
        y_pos = torch.gather(grades, 1, pos_idx)
        dy = y_pos[:, :, None] - grades[:, None, :]
        pair = pos_ok[:, :, None] & (dy > 0)
        per = dy * F.softplus(scores[:, None, :] - s_pos[:, :, None])
        return torch.where(pair, per, torch.zeros_like(per)).sum() / pair.sum().clamp(min=1)

    prefix = (torch.arange(dim) < d_next).float()

    def loss_fn(g):
        if ads:
            hard = torch.zeros(dim)
            scores = z + tau * g
            hard[torch.topk(scores.detach(), d_next).indices] = 1.0
            relaxed = relaxed_topk(scores, d_next, tau)
            mask = hard + relaxed - relaxed.detach()
        else:  # the prefix of the kept dims
            mask = prefix
        yq, yd = q @ w + bias, d @ w + bias
        rank = 0.0
        for m in (None, mask):
            a, bb = (yq, yd) if m is None else (yq * m, yd * m)
            rank = rank + rank_loss(scale * F.normalize(a, dim=1) @ F.normalize(bb, dim=1).T)
        x, y = torch.cat([q, d]), torch.cat([yq, yd])
        sim = x @ mem["x"].T
        sim = sim.masked_fill(mem["ids"][None, :] == ids[:, None], float("-inf"))
        top, idx = torch.topk(sim, k, dim=1)
        ym = mem["x"] @ w + bias  # the memory through the kept columns (all, at stage 1)
        nbr = ym[idx]  # (n, k, N)
        unsup = 0.0
        for m in (None, mask):
            a, bb = (y, nbr) if m is None else (y * m, nbr * m)
            cs = torch.einsum("nd,nkd->nk", F.normalize(a, dim=1), F.normalize(bb, dim=2))
            unsup = unsup + (top - cs).abs().mean()
        return rank + alpha * unsup, x

    def step():
        opt.zero_grad(set_to_none=True)
        loss, x = loss_fn(-torch.log(-torch.log(torch.rand(dim).clamp(1e-20, 1.0))))
        loss.backward()
        opt.step()
        with torch.no_grad():  # enqueue, oldest first out
            n = x.shape[0]
            slots = (mem["ptr"] + torch.arange(n)) % mem_size
            mem["x"][slots] = x
            mem["ids"][slots] = ids
            mem["ptr"] = (mem["ptr"] + n) % mem_size
        return loss

    return torch.compile(step) if compile_step else step


def bench(repeats: int = 5, steps: int = 10, variants=("eager", "compiled"), **shape) -> dict:
    """steps/s (median of ``repeats`` x ``steps``) of the eager and/or the compiled step
    (``shape``: make_step's arguments, e.g. ``ads=False`` for prefix masks). With ADS at
    D = 4096, ``torch.compile`` unrolls the 2048 successive softmaxes of the relaxed top-k
    and did not finish compiling in 15 minutes on a 2-core CPU."""
    import torch

    out = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    for name, compiled in (("eager", False), ("compiled", True)):
        if name not in variants:
            continue
        try:
            step = make_step(compile_step=compiled, **shape)
            step()  # warm-up (compiles)
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                for _ in range(steps):
                    step()
                times.append(time.perf_counter() - t)
            out[name] = {"steps_per_s": steps / statistics.median(times), "runs": repeats}
        except Exception as e:  # noqa: BLE001 - e.g. no C++ compiler for torch.compile
            out[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    best = [v["steps_per_s"] for v in out.values() if isinstance(v, dict) and "steps_per_s" in v]
    out["best_steps_per_s"] = max(best) if best else None
    return out
