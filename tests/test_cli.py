"""Every command refuses bad input in one line (exit 2) before it computes or writes
anything, and every command that scores honours all of ``config.eval``.

The in-process cases run a command's library function under ``cli.guarded`` (what the
launchers do); the flag cases run a launcher in a subprocess. Each case checks the exit
status, that stderr is one line naming the field, file or id, and that the workdir is as
it was.
"""

import subprocess
import sys

import pytest

from smec_jax import cli, jobs
from smec_jax.studies import analyses, reproduction
from tests.helpers import arguana_style, tiny_config


def tree(path):
    """Every file and folder under ``path`` with its size (None if ``path`` is absent)."""
    if not path.exists():
        return None
    return sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*"))


def refuse(capsys, fn, workdir, *match):
    before = tree(workdir)
    with pytest.raises(SystemExit) as err:
        cli.guarded(fn)
    lines = capsys.readouterr().err.strip().splitlines()
    assert err.value.code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for m in match:
        assert m in lines[0], (m, lines[0])
    assert tree(workdir) == before, "the workdir changed"


# (field, value, words the one line must hold); each is refused by launch.train
CONFIG_CASES = [
    ("train.lr", -1.0, "--config.train.lr must be >= 0.0, got -1.0"),
    ("train.lr", float("nan"), "--config.train.lr must be finite"),
    ("train.steps_per_stage", 0, "--config.train.steps_per_stage must be >= 1"),
    ("train.eval_every", 0, "--config.train.eval_every must be >= 1"),
    ("train.patience", 0, "--config.train.patience must be >= 1"),
    ("memory.alpha", -0.1, "--config.memory.alpha must be >= 0.0"),
    ("ads.tau_end", 0.0, "--config.ads.tau_end must be > 0.0"),
    ("ads.tau_start", float("inf"), "--config.ads.tau_start must be finite"),
    ("train.score_scale", 0.0, "--config.train.score_scale must be > 0.0"),
    ("train.val_fraction", 1.5, "--config.train.val_fraction must be < 1.0"),
    ("train.log_share", 1.0, "--config.train.log_share must be < 1.0"),
    ("train.log_share", 0.5, "log_share 0.5 only applies to train.unlabelled_queries=train+pseudo"),
    ("train.val_fraction", 0.0, "--config.train.val_fraction must be > 0.0"),
    ("ladder", (32, 32, 8), "--config.ladder (32, 32, 8) must be strictly decreasing"),
    ("ladder", (), "--config.ladder must be a non-empty tuple"),
    ("ladder", (64, 8), "ladder (64, 8) must lie within 1..32"),
    ("memory.size", 3, "memory.size 3 is smaller than memory.k 4"),
    ("memory.k", 0, "--config.memory.k must be >= 1"),
    ("memory.neighbour_mode", "fast", "--config.memory.neighbour_mode is 'fast'; use one of"),
    ("train.batch_queries", 12, "batch of 12 is not divisible by the 8 devices"),
    ("train.batch_queries", 200, "batch of 200 queries but only"),
    ("train.hard_pool", 2, "--config.train.hard_pool (2) must be >= train.n_hard (3)"),
    ("train.n_pos", 0, "--config.train.n_pos must be >= 1"),
    ("method", "smek", "unknown method 'smek'; use one of truncate, pca"),
    ("model.kind", "mlp", "--config.model.kind is 'mlp'; use one of linear, residual_mlp"),
    ("model.init", "random", "--config.model.init is 'random'"),
    ("train.schedule", "both", "--config.train.schedule is 'both'; use one of sequential"),
    ("train.split", "dev", "has no split 'dev'; splits: ['test', 'train']"),
    ("eval.split", "dev", "has no split 'dev'; splits: ['test', 'train']"),
    ("eval.methods", ("truncate", "nope"), "--config.eval.methods: unknown method 'nope'"),
    ("eval.ties", "random", "--config.eval.ties is 'random'; use one of trec_eval, row"),
    ("data.source", "s3", "--config.data.source is 's3'; use one of beir, arrays, tfds, synthetic"),
    ("mesh.num_devices", 16, "--config.mesh.num_devices 16: only 8 devices are visible"),
    ("seed", -1, "--config.seed must be >= 0, got -1"),
    ("adaptor.topk", 0, "--config.adaptor.topk must be >= 1"),
    ("adaptor.rec_weight", -1.0, "--config.adaptor.rec_weight must be >= 0.0"),
]


@pytest.mark.parametrize("field,value,msg", CONFIG_CASES, ids=lambda x: str(x))
def test_bad_config_values_are_refused_before_anything_is_written(
    tmp_path, capsys, field, value, msg
):
    cfg = tiny_config()
    node, *rest = field.split(".")
    if rest:
        cfg[node][rest[0]] = value
    else:
        cfg[node] = value
    workdir = tmp_path / "run"
    refuse(capsys, lambda: jobs.train_and_evaluate(cfg, str(workdir)), workdir, msg)


def test_a_residual_mlp_with_another_output_size_is_refused(tmp_path, capsys):
    cfg = tiny_config()
    cfg.method, cfg.model.out_dim = "matryoshka_adaptor", 16
    refuse(
        capsys,
        lambda: jobs.train_and_evaluate(cfg, str(tmp_path / "w")),
        tmp_path / "w",
        "--config.model.out_dim 16: a residual_mlp maps 32 -> 32 dims",
    )


def test_a_workdir_that_is_a_file_is_refused_by_every_command(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("keep me")
    cfg = tiny_config()
    for fn in (
        lambda: jobs.train_and_evaluate(cfg, str(f)),
        lambda: jobs.evaluate(cfg, str(f)),
        lambda: reproduction.run(cfg, str(f), ["truncate"], [0]),
        lambda: analyses.run(cfg, str(f), ["cross"]),
        lambda: jobs.train_and_evaluate(cfg, str(f / "sub")),
        lambda: jobs.prepare(cfg, str(f)),
    ):
        refuse(capsys, fn, tmp_path, str(f))
    assert f.read_text() == "keep me"


def test_export_without_a_finished_run_is_refused(tmp_path, capsys):
    refuse(
        capsys,
        lambda: jobs.export(tiny_config(), str(tmp_path / "none")),
        tmp_path / "none",
        "no checkpoints in",
    )


def test_a_missing_data_folder_is_refused(tmp_path, capsys):
    cfg = tiny_config()
    cfg.data.update(source="beir", root=str(tmp_path / "absent"))
    refuse(
        capsys,
        lambda: jobs.train_and_evaluate(cfg, str(tmp_path / "w")),
        tmp_path / "w",
        "absent/scifact not found",
    )


FLAG_CASES = [
    (["--config.train.lerning_rate=1"], "the config has no field train.lerning_rate"),
    (["--config.train.lr=fast"], "--config.train.lr=fast: could not convert"),
    (["--config.eval.exclude_self=perhaps"], "--config.eval.exclude_self"),
    (["--config", "configs/nope.py"], "--config configs/nope.py: cannot load that config"),
    (["stray"], "unexpected argument 'stray'"),
]


@pytest.mark.parametrize("extra,msg", FLAG_CASES, ids=lambda x: str(x))
def test_bad_flags_are_one_line(tmp_path, extra, msg):
    workdir = tmp_path / "w"
    cmd = [sys.executable, "-m", "launch.train", "--config", "configs/tiny.py"]
    out = subprocess.run(
        [*cmd, "--workdir", str(workdir), *extra], capture_output=True, text=True, timeout=300
    )
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and msg in lines[0], lines
    assert not workdir.exists()


# ---------------------------------------------------------------------------- config.eval reaches every score


def _full_size(doc, method):
    return doc["results"][method]["32"]["ndcg@10"]


@pytest.mark.parametrize("command", ["train", "evaluate", "reproduce", "analyze"])
def test_exclude_self_reaches_the_scores_of_every_command(tmp_path, command):
    """On a corpus whose queries are its own documents, every command scores the query's own
    document as a hit unless eval.exclude_self drops it, and drops it when asked."""
    scores = {}
    for flag in (False, True):
        cfg = arguana_style(tmp_path / f"data-{flag}")
        cfg.eval.exclude_self = flag
        wd = tmp_path / f"{command}-{flag}"
        if command == "train":
            cfg.method = "pca"
            scores[flag] = _full_size(jobs.train_and_evaluate(cfg, str(wd)), "truncate")
        elif command == "evaluate":
            scores[flag] = _full_size(jobs.evaluate(cfg, str(wd)), "truncate")
        elif command == "reproduce":
            scores[flag] = _full_size(reproduction.run(cfg, str(wd), ["truncate"], [0]), "truncate")
        else:
            ds_cfg = cfg.copy_and_resolve_references()
            from smec_jax.datasets import sources

            target = sources.load(ds_cfg.data)
            doc = analyses.run(
                cfg,
                str(wd),
                ["cross"],
                targets=("self",),
                transfer_methods=(),
                target_methods=(),
                load_target=lambda *a, t=target: t,
            )
            scores[flag] = doc["cross"]["self"]["truncate"]["32"]["ndcg@10"]
    # with its own document at rank 1, a query's relevant neighbour is at best rank 2
    assert scores[False] < 0.7 < 0.95 < scores[True], scores


def test_a_flag_that_the_method_sets_itself_is_named_in_a_warning(tmp_path):
    """A --config field the chosen method overrides does not run; the launcher says so in
    one warning line per field, before anything else happens (here: a bad lr refused)."""
    cfg = tiny_config()
    cfg.train.log_share, cfg.train.lr = 0.25, 0.1
    argv = ["prog", "--config.train.log_share=0.25", "--config.train.lr=0.1"]
    got = cli.overridden_flags(argv, cfg, ["smec", "distill_pseudo_log", "distill_pseudo_log"])
    assert got == [
        "warning: --config.train.log_share=0.25 does not apply to method distill_pseudo_log, "
        "which sets it to 0.5"
    ]
    cfg.train.log_share = 0.5  # the method's own value: nothing to warn about
    assert cli.overridden_flags(argv, cfg, ["distill_pseudo_log", "nosuchmethod"]) == []
    workdir = tmp_path / "w"
    cmd = [sys.executable, "-m", "launch.train", "--config", "configs/tiny.py", "--workdir"]
    extra = ["--config.method=distill_pseudo_log", "--config.train.distill_top=3", "--config.train.lr=-1"]  # fmt: skip
    out = subprocess.run([*cmd, str(workdir), *extra], capture_output=True, text=True, timeout=300)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 2, out.stderr[-2000:]
    assert lines[0].startswith("warning: --config.train.distill_top=3 does not apply to method distill_pseudo_log, which sets it to 32")  # fmt: skip
    assert lines[1].startswith("error: --config.train.lr must be >= 0.0")
    assert not workdir.exists()
