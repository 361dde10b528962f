"""The reproduction: every method x seed through one path, mean ± std, resumable; its rows
come from the method registry."""

import json

import pytest

from smec_jax import methods
from smec_jax.studies import reproduction
from smec_jax.training import train
from tests.helpers import tiny_config


@pytest.mark.slow
def test_report_with_std_and_resume(tmp_path, monkeypatch):
    cfg = tiny_config()
    names = ["truncate", "smec", "mrl"]
    doc = reproduction.run(cfg, str(tmp_path), names, [0, 1])
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
    assert reproduction.report_only(str(tmp_path), [0, 1]) == saved
    assert (tmp_path / "report.md").read_text() == report
    # a rerun trains nothing: every (method, seed) is cached
    monkeypatch.setattr(train, "train", lambda *a, **k: pytest.fail("retrained a cached run"))
    assert reproduction.run(cfg, str(tmp_path), names, [0, 1]) == doc


def test_a_cached_run_from_another_config_is_refused(tmp_path):
    cfg = tiny_config()
    reproduction.run(cfg, str(tmp_path), ["truncate", "mrl"], [0])
    cfg.train.steps_per_stage = 5
    with pytest.raises(ValueError, match="written with another config"):
        reproduction.run(cfg, str(tmp_path), ["truncate", "mrl"], [0])


def test_a_field_added_since_a_run_was_cached_matches_only_at_its_old_value():
    """A cached config lacking a field of ADDED_FIELDS matches while the field keeps the
    value that reproduces the old behaviour, and no longer once it is changed; any other
    difference, or a missing field not listed, is a mismatch."""
    current = json.loads(tiny_config().to_json(sort_keys=True))
    assert current["csr"]["aux_k"] == 0  # off by default
    cached = json.loads(json.dumps(current))
    for leaf in ("aux_k", "aux_weight", "dead_steps"):
        del cached["csr"][leaf]
    assert reproduction.config_matches(cached, current)
    assert reproduction.config_matches(current, current)
    on = json.loads(json.dumps(current))
    on["csr"]["aux_k"] = 512
    assert not reproduction.config_matches(cached, on)
    del cached["csr"]["k"]
    assert not reproduction.config_matches(cached, current)
    assert not reproduction.config_matches(None, current)


def test_rows_come_from_the_registry(tmp_path):
    """The launcher's default rows are every registered method in report order, the ablation
    table is the ablation group plus SMEC, and an unknown name fails before anything runs."""
    from launch import reproduce

    assert reproduce.FLAGS["methods"].default == methods.names()
    assert reproduction.ablation_rows() == ["mrl", "mrl_smrl", "mrl_ads", "mrl_sxbm", "smec"]
    with pytest.raises(ValueError, match="unknown method 'smek'"):
        reproduction.run(tiny_config(), str(tmp_path / "x"), ["truncate", "smek"], [0])
    assert not (tmp_path / "x").exists()
