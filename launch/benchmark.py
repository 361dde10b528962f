"""Speed benchmarks (not tests): medians of several runs, printed and optionally saved.

  python -m launch.benchmark [--bench eval] [--config ...] [--repeats 5] [--out FILE.json]

Benchmarks:
  eval   scoring every ladder size of the configured dataset with truncation and PCA, after
         the embeddings are loaded and the methods fitted (the warm-up run compiles).
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable

import jax
from absl import app, flags

from launch import common
from smec_jax import compressors, data, evaluation

FLAGS = flags.FLAGS
common.define_config_and_workdir()
flags.DEFINE_list("bench", ["eval"], "Benchmarks to run.")
flags.DEFINE_integer("repeats", 5, "Timed repetitions (the median is reported).")
flags.DEFINE_string("out", None, "Optional JSON file for the figures.")


def timed(fn: Callable[[], object], repeats: int) -> dict:
    fn()  # warm-up: compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": repeats}


def bench_eval(config, repeats: int) -> dict:
    ds = data.load_from_config(config.data)
    ladder = tuple(config.ladder)
    fitted = {m: compressors.fit_method(m, ds, ladder, config) for m in ("truncate", "pca")}
    res = timed(lambda: evaluation.evaluate(ds, fitted, ladder), repeats)
    res |= {"dataset": ds.name, "encoder": ds.encoder, "sizes": list(ladder), "methods": 2,
            "queries": len(ds.judged_queries("test")), "docs": len(ds.corpus_ids)}
    print(f"eval: {res['methods']} methods x {len(ladder)} sizes on {ds.name} "
          f"({res['queries']} queries x {res['docs']} docs): median {res['median_s']:.3f}s, "
          f"{res['median_s'] / (2 * len(ladder)):.3f}s per size")
    return res


BENCHES = {"eval": bench_eval}


def main(argv):
    del argv

    def run():
        unknown = set(FLAGS.bench) - set(BENCHES)
        if unknown:
            raise ValueError(f"unknown benchmark(s) {sorted(unknown)}; known: {sorted(BENCHES)}")
        report = {"backend": jax.default_backend(), "devices": jax.device_count(),
                  "device_kind": jax.devices()[0].device_kind, "cpu": platform.processor()}
        for name in FLAGS.bench:
            report[name] = BENCHES[name](FLAGS.config, FLAGS.repeats)
        if FLAGS.out:
            evaluation.atomic_write(FLAGS.out, json.dumps(report, indent=1) + "\n")

    common.guarded(run)


if __name__ == "__main__":
    app.run(main)
