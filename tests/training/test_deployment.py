"""The nightly job's deployment material is well-formed and runs the commands memlake has."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from memlake.cli import build_parser

INFRA = Path(__file__).resolve().parents[2] / "infra"


def _documents(path: Path) -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("name", ["cpu", "single-gpu", "multi-gpu"])
def test_accelerate_configs_load(name: str) -> None:
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(INFRA / "accelerate" / f"{name}.yaml"))
    assert config.num_processes >= 1
    assert str(config.mixed_precision) == ("no" if name == "cpu" else "bf16")


def test_the_cronjob_runs_kv_cache_then_distill_on_gpu_nodes() -> None:
    [cronjob] = _documents(INFRA / "k8s" / "distill-cronjob.yaml")
    assert cronjob["kind"] == "CronJob"
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    [init] = pod["initContainers"]
    [main] = pod["containers"]
    parser = build_parser()
    assert parser.parse_args(init["command"][1:]).command == "kv-cache"
    launch = main["command"]
    assert launch[:2] == ["accelerate", "launch"]
    config = Path(launch[launch.index("--config_file") + 1]).relative_to("/app")
    assert (INFRA.parent / config).is_file()
    module_args = launch[launch.index("-m") + 2 :]
    assert launch[launch.index("-m") + 1] == "memlake"
    assert parser.parse_args(module_args).all, shlex.join(module_args)
    gpus = main["resources"]["limits"]["nvidia.com/gpu"]
    from accelerate.commands.config.config_args import ClusterConfig

    assert ClusterConfig.from_yaml_file(str(INFRA.parent / config)).num_processes == gpus
    mounts = {m["mountPath"] for m in main["volumeMounts"]}
    assert "/checkpoints" in mounts


def test_the_kustomization_lists_every_manifest() -> None:
    [kustomization] = _documents(INFRA / "k8s" / "kustomization.yaml")
    listed = set(kustomization["resources"])
    present = {p.name for p in (INFRA / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    config = _documents(INFRA / "k8s" / "training-config.yaml")[0]
    assert config["data"]["HF_HUB_OFFLINE"] == "1"
