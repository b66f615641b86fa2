"""GPU code paths: abundance blocks go to the workers started with ``--resources GPU=1`` (and only
there), tested on CPU with real `dask worker` processes; ``--device cuda`` on a machine without
CUDA fails with the clear error; where CUDA is present, GPU predictions (float16 autocast) match
the CPU's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from distributed import Client

from landcoverpy.models.abundance import TrainParams, train_abundance
from tests import servers
from tests.abundance_data import generated_mixtures
from tests.test_abundance_cli import area  # noqa: F401 - the fixture
from tests.test_cli_status import run_cli


def executed_keys(client: Client, prefix: str) -> dict[str, set[str]]:
    """Per worker name, the keys of tasks named ``prefix…`` it executed (its transition log)."""

    def executed(dask_worker: Any) -> list[str]:
        return sorted({str(e[0]) for e in dask_worker.state.log if len(e) > 2 and e[2] == "executing"})

    found = client.run(executed)
    names = {addr: info["name"] for addr, info in client.scheduler_info()["workers"].items()}
    return {str(names[addr]): {k for k in keys if prefix in k} for addr, keys in found.items()}


@pytest.mark.slow
def test_abundance_blocks_go_to_gpu_workers_only(area: tuple[Path, dict[str, Path]], server_logs: Path) -> None:  # noqa: F811
    root, p = area
    home = root / "gpu-home"
    with servers.dask_cluster(server_logs, n_workers=2, worker_args={0: ["--resources", "GPU=1"]}) as scheduler:
        env = {"LANDCOVERPY_HOME": str(home), "TMP_DIR": str(root / "tmp"), "DASK_CLUSTER_IP": scheduler.address}
        args = ["abundance", "dataset", "--series", str(p["series"]), "--year", "2021"]
        args += ["--n1-map", str(p["n1"]), "--n1-labels", str(p["n1_labels"]), "--block-km", "2", "--step", "monthly"]
        res = run_cli(args, env, root, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        train = ["abundance", "train", "--level", "N1", "--epochs", "5", "--model-type", "brits", "--no-progress"]
        res = run_cli(train, env, root, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        if not torch.cuda.is_available():  # the clear refusal, before any block is sent anywhere
            res = run_cli(["abundance", "predict", "--level", "N1", "--device", "cuda"], env, root, timeout=300)
            assert res.returncode == 1
            errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
            assert len(errors) == 1 and "CUDA" in errors[0] and "--device cpu" in errors[0], res.stderr
            assert "Traceback" not in res.stderr
        res = run_cli(
            ["abundance", "predict", "--level", "N1", "--block-size", "8", "--output-dir", str(root / "gpu-out")],
            env,
            root,
            timeout=600,
        )
        assert res.returncode == 0, res.stderr[-2000:]
        assert "blocks go to the cluster's GPU workers" in res.stderr
        with Client(scheduler.address, timeout="30s") as client:
            ran = executed_keys(client, "predict_block")
    assert len(ran["worker-0"]) > 1, ran  # several blocks (--block-size 8), all on the GPU worker
    assert ran["worker-1"] == set(), ran


PARAMS = TrainParams(hidden=16, epochs=20, batch_size=64, learning_rate=5e-3, seed=0, model_type="brits")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_gpu_predictions_match_cpu_within_float16_tolerance() -> None:
    data, _ = generated_mixtures(rows=30, cols=30)
    model, _ = train_abundance(data, PARAMS)
    cpu = model.predict(data.series, data.ancillary, device="cpu")
    gpu = model.predict(data.series, data.ancillary, device="cuda")
    assert gpu.shape == cpu.shape and np.isfinite(gpu).all()
    # float16 autocast: about 3 significant digits on fractions in [0, 1]
    np.testing.assert_allclose(gpu, cpu, atol=1e-2)
    assert float(np.abs(gpu - cpu).mean()) < 2e-3
