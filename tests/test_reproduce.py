"""The reproduction command: every method x seed through one path, mean ± std, resumable."""

import json

import pytest

from launch import reproduce
from smec_jax import train
from tests.test_train import tiny_config


def test_report_with_std_and_resume(tmp_path, monkeypatch):
    cfg = tiny_config()
    methods = ["truncate", "smec", "mrl"]
    doc = reproduce.run(cfg, str(tmp_path), methods, [0, 1])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(doc))
    row = saved["results"]["smec"]["8"]
    assert {"ndcg@10", "ndcg@10_std", "ndcg@10_unseen", "ndcg@10_unseen_std"} <= set(row)
    per_seed = [
        json.loads((tmp_path / "runs" / f"smec-s{s}" / "results.json").read_text())["results"][
            "smec"
        ]["8"]["ndcg@10"]
        for s in (0, 1)
    ]
    assert row["ndcg@10"] == pytest.approx(sum(per_seed) / 2)
    assert saved["results"]["truncate"]["8"]["ndcg@10_std"] == 0.0
    report = (tmp_path / "report.md").read_text()
    assert "## Ablations" in report and "±" in report
    # the report can be rewritten from results.json alone, identically
    (tmp_path / "report.md").unlink()
    assert reproduce.report_only(str(tmp_path), [0, 1]) == saved
    assert (tmp_path / "report.md").read_text() == report
    # a rerun trains nothing: every (method, seed) is cached
    monkeypatch.setattr(train, "fit", lambda *a, **k: pytest.fail("retrained a cached run"))
    assert reproduce.run(cfg, str(tmp_path), methods, [0, 1]) == doc


def test_a_cached_run_from_another_config_is_refused(tmp_path):
    cfg = tiny_config()
    reproduce.run(cfg, str(tmp_path), ["truncate", "mrl"], [0])
    cfg.train.steps_per_stage = 5
    with pytest.raises(ValueError, match="written with another config"):
        reproduce.run(cfg, str(tmp_path), ["truncate", "mrl"], [0])


def test_every_default_method_runs_end_to_end(tmp_path):
    """Each method of the report trains (where it trains) and is scored at every ladder size
    on the tiny config, through the same path as the real report."""
    cfg = tiny_config()
    doc = reproduce.run(cfg, str(tmp_path), list(reproduce.DEFAULT_METHODS), [0])
    assert list(doc["results"]) == list(reproduce.DEFAULT_METHODS)
    assert set(reproduce.DEFAULT_METHODS) == set(train.METHODS) | {"truncate", "pca", "doc_prior"}
    for method, by_size in doc["results"].items():
        assert set(by_size) == {"32", "16", "8"}, method
        for row in by_size.values():
            assert 0.0 < row["ndcg@10"] <= 1.0, method
