"""Shared test helpers: the tiny config (configs/tiny.py) as an object and as flags."""

from configs import tiny

tiny_config = tiny.get_config


def tiny_flags() -> list[str]:
    """configs/tiny.py as ``--config.x=y`` overrides, to shrink another config file (the pod's)
    to the same tiny run: its data, ladder and every train and memory field (memory sharding
    stays the other file's)."""
    t = tiny.get_config()
    out = [f"--config.data.source={t.data.source}"]
    out += [f"--config.data.synthetic.{k}={v}" for k, v in t.data.synthetic.items()]
    out.append("--config.ladder=(" + ",".join(map(str, t.ladder)) + ")")
    for section in ("train", "memory"):
        for k, v in t[section].items():
            if (section, k) != ("memory", "sharded"):
                out.append(f"--config.{section}.{k}={v}")
    return out
