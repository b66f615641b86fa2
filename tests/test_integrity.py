"""The catalog never vouches for a missing object: objects deleted or truncated behind the
workflow's back (as a person browsing the bucket can) are reported by `verify` and rebuilt by the
next `run` or in place by `verify --repair`, and the maps equal the first run's; a full disk or a
bucket over its quota stops a run with one line and leaves no partial object."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import numpy as np
import pytest
import rasterio

from landcoverpy import records
from landcoverpy.errors import NoSpaceError
from landcoverpy.records import (
    CompositeRecord,
    HierarchyRecord,
    MapRecord,
    MemberRecord,
    ProductRecord,
    TrainingDatasetRecord,
)
from landcoverpy.storage import LocalStore
from tests import servers
from tests.lineage_scene import make_scene, plain_app_data
from tests.test_cli_status import run_cli
from tests.test_lineage import Backend, embedded, exported, on_servers, run_args
from tests.test_outages import check_console, environment


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("integrity-scene")
    return {"source": make_scene(root), "plain": plain_app_data(root)}


def verify(backend: Backend, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["verify", *args], backend.env, cwd)


def damage(backend: Backend) -> dict[str, str]:
    """Delete one object of each kind the catalog records and truncate one composite layer;
    returns kind -> the bucket/key damaged."""
    done: dict[str, str] = {}
    with backend.context() as ctx:
        product = records.find(ctx.catalog, ProductRecord)[0]
        composite = records.find(ctx.catalog, CompositeRecord)[0]
        dataset = records.find(ctx.catalog, TrainingDatasetRecord, {"kind": None})[0]
        hierarchy = records.find(ctx.catalog, HierarchyRecord, {"level": "hierarchy"})[0]
        member = records.load(ctx.catalog, MemberRecord, hierarchy.category_model)
        the_map = records.find(ctx.catalog, MapRecord, {"kind": "classification"})[0]
        assert member is not None
        band = next(iter(product.bands.values()))
        layers = list(composite.layers().values())
        out = the_map.outputs["classification"]
        for kind, (bucket, key) in {
            "product band": (band.bucket, band.key),
            "composite layer": (layers[0].bucket, layers[0].key),
            "dataset": (dataset.bucket, dataset.key),
            "model": (member.bucket, member.key),
            "map layer": (out.bucket, out.key),
        }.items():
            ctx.store.delete(bucket, key)
            done[kind] = f"{bucket}/{key}"
        # truncated: the first half of another composite layer written over it
        layer = layers[1]
        data = ctx.store.get_bytes(layer.bucket, layer.key)
        ctx.store.put_bytes(layer.bucket, layer.key, data[: len(data) // 2])
        done["truncated composite layer"] = f"{layer.bucket}/{layer.key}"
    return done


def stored_maps(backend: Backend, scratch: Path) -> dict[str, np.ndarray]:
    """The pixels of the classification map's layers as the store holds them."""
    scratch.mkdir(parents=True, exist_ok=True)
    out: dict[str, np.ndarray] = {}
    with backend.context() as ctx:
        the_map = records.find(ctx.catalog, MapRecord, {"kind": "classification"})[0]
        for name in ("classification", "sl_classification", "confidence"):
            layer = the_map.outputs[name]
            path = scratch / f"{name}.tif"
            path.write_bytes(ctx.store.get_bytes(layer.bucket, layer.key))
            with rasterio.open(path) as src:
                out[name] = src.read(1)
    return out


def rebuild_after_damage(backend: Backend, scene: dict[str, Path], root: Path, by: str = "run") -> None:
    first = run_cli(run_args(scene, "plain", root / "first"), backend.env, root, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    before = exported(root / "first")
    clean = verify(backend, root)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "store and catalog agree" in clean.stdout

    damaged = damage(backend)
    report = verify(backend, root)
    assert report.returncode == 1, report.stdout + report.stderr
    for kind, where in damaged.items():
        row = next((line for line in report.stdout.splitlines() if where in line), None)
        assert row is not None, (kind, report.stdout)
        assert row.startswith("size differs" if kind.startswith("truncated") else "missing"), row

    if by == "verify":  # rebuilt in place, from the inputs a run takes
        args = ["verify", "--repair", *run_args(scene, "plain", None)[1:]]
        again = run_cli(args, backend.env, root, timeout=600)
        assert again.returncode == 0, again.stdout + again.stderr[-3000:]
        check_console(again)
        counted = next(line for line in again.stdout.splitlines() if line.startswith("rebuilt "))
        n_rebuilt, n_stale = counted.split()[1], counted.split()[3]
        assert n_rebuilt == n_stale and int(n_stale) >= len(damaged) - 1, again.stdout  # two layers, one composite
        assert "not made by these inputs" not in again.stdout and "store and catalog agree" in again.stdout
        after = stored_maps(backend, root / "stored")
    else:  # rebuilt by the next run
        again = run_cli(run_args(scene, "plain", root / "again"), backend.env, root, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        check_console(again)
        rebuilt = [line for line in again.stderr.splitlines() if "rebuilding it" in line]
        for what in ("product", "composite", "dataset", "model", "map"):
            assert any(f" {what} " in line for line in rebuilt), (what, rebuilt)
        after = exported(root / "again")
    for name, pixels in before.items():
        assert np.array_equal(after[name], pixels), name
    final = verify(backend, root)
    assert final.returncode == 0, final.stdout + final.stderr
    assert "store and catalog agree" in final.stdout


@pytest.mark.slow  # the default suite rebuilds in place (below); the servers' case rebuilds by run too
def test_damaged_objects_are_reported_and_rebuilt(scene: dict[str, Path], tmp_path: Path) -> None:
    rebuild_after_damage(embedded(tmp_path), scene, tmp_path)


def test_verify_repair_rebuilds_in_place(scene: dict[str, Path], tmp_path: Path) -> None:
    rebuild_after_damage(embedded(tmp_path), scene, tmp_path, by="verify")


@pytest.mark.slow
def test_verify_repair_reads_the_inputs_before_touching_anything(scene: dict[str, Path], tmp_path: Path) -> None:
    """Inputs that cannot be read stop the repair before anything is removed."""
    backend = embedded(tmp_path)
    first = run_cli(run_args(scene, "plain", None), backend.env, tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    damaged = damage(backend)
    missing = tmp_path / "nowhere" / "dataset.csv"
    args = [a if a != str(scene["plain"] / "dataset.csv") else str(missing) for a in run_args(scene, "plain", None)]
    refused = run_cli(["verify", "--repair", *args[1:]], backend.env, tmp_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "dataset.csv" in refused.stderr and "--no-rebuild" in refused.stderr
    check_console(refused)
    report = verify(backend, tmp_path)  # nothing was removed: every damaged object is still reported
    assert report.returncode == 1
    assert all(where in report.stdout for where in damaged.values()), report.stdout
    removed = verify(backend, tmp_path, "--repair", "--no-rebuild")
    assert removed.returncode == 0 and "`landcoverpy run` rebuilds them" in removed.stdout, removed.stdout


@pytest.mark.slow
def test_damaged_objects_are_reported_and_rebuilt_on_servers(
    scene: dict[str, Path],
    tmp_path: Path,
    s3_server: servers.Server,
    mongo_server: servers.Server,
    dask_scheduler: servers.Server,
) -> None:
    rebuild_after_damage(on_servers(tmp_path, s3_server, mongo_server, dask_scheduler), scene, tmp_path)


@pytest.mark.slow  # the damaged-object case above stays in the default suite
def test_verify_checksums_repair_and_prune_orphans(scene: dict[str, Path], tmp_path: Path) -> None:
    backend = embedded(tmp_path)
    first = run_cli(run_args(scene, "plain", tmp_path / "first"), backend.env, tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    with backend.context() as ctx:
        composite = records.find(ctx.catalog, CompositeRecord)[0]
        layer = next(iter(composite.layers().values()))
        data = bytearray(ctx.store.get_bytes(layer.bucket, layer.key))
        data[len(data) // 2] ^= 0xFF  # one flipped byte: same size
        ctx.store.put_bytes(layer.bucket, layer.key, bytes(data))
    assert verify(backend, tmp_path).returncode == 0  # sizes agree: only a checksum sees it
    hashed = verify(backend, tmp_path, "--checksums")
    assert hashed.returncode == 1
    assert any(line.startswith("checksum differs") and layer.key in line for line in hashed.stdout.splitlines())

    with backend.context() as ctx:
        the_map = records.find(ctx.catalog, MapRecord, {"kind": "classification"})[0]
        gone = the_map.outputs["confidence"]
        ctx.store.delete(gone.bucket, gone.key)
        stray = "18SVG/not-a-map/stray.tif"
        ctx.store.put_bytes(gone.bucket, stray, b"left by hand")
    report = verify(backend, tmp_path, "--checksums")
    assert report.returncode == 1
    rows = report.stdout.splitlines()
    assert any(line.startswith("orphan") and stray in line for line in rows), report.stdout
    assert any(line.startswith("missing") and gone.key in line for line in rows), report.stdout

    repaired = verify(backend, tmp_path, "--checksums", "--repair", "--no-rebuild", "--prune-orphans")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    with backend.context() as ctx:
        # stale records go with all their objects: the next run rebuilds them, nothing is left unowned
        assert records.load(ctx.catalog, MapRecord, the_map.id) is None
        assert records.load(ctx.catalog, CompositeRecord, composite.id) is None
        assert not ctx.store.exists(gone.bucket, the_map.outputs["classification"].key)
        assert not ctx.store.exists(gone.bucket, stray)
    clean = verify(backend, tmp_path, "--checksums")
    assert clean.returncode == 0, clean.stdout
    assert "store and catalog agree" in clean.stdout


# Full disks and quotas ------------------------------------------------------------------------


def test_a_full_disk_leaves_no_partial_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC injected at the store boundary: half the object is written, then the disk is full."""
    store = LocalStore(tmp_path / "store")
    real = shutil.copyfileobj

    def fill_up(src, dst, length=0):  # type: ignore[no-untyped-def]
        dst.write(src.read(1000))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", fill_up)
    with pytest.raises(NoSpaceError) as info:
        store.put_bytes("composites", "18SVG/abc/B02.tif", b"x" * 5000)
    monkeypatch.setattr(shutil, "copyfileobj", real)
    assert "no space left" in str(info.value) and str(tmp_path / "store") in str(info.value)
    assert "1000 B" in str(info.value) or "0.0 MiB" in str(info.value)
    assert not [p for p in (tmp_path / "store").rglob("*") if p.is_file()]  # neither the object nor a .part


def _can_mount_tmpfs(where: Path) -> str | None:
    if not shutil.which("unshare"):
        return "util-linux's unshare is not installed"
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {where}"], capture_output=True, text=True
    )
    return None if probe.returncode == 0 else f"cannot mount a tmpfs in a user namespace: {probe.stderr.strip()}"


def test_a_full_local_store_stops_the_run_with_one_line(scene: dict[str, Path], tmp_path: Path) -> None:
    """LANDCOVERPY_HOME on a 3 MiB tmpfs (a user and mount namespace): the products fill it."""
    home = tmp_path / "home"
    home.mkdir()
    why = _can_mount_tmpfs(home)
    if why:
        pytest.skip(why)
    backend = embedded(tmp_path)
    env = backend.env | {"LANDCOVERPY_HOME": str(home)}
    cli = " ".join(f"'{a}'" for a in [sys.executable, "-m", "landcoverpy.cli", *run_args(scene, "plain", None)])
    script = (
        f"mount -t tmpfs -o size=3m tmpfs {home} && {cli}; rc=$?; "
        f"echo '--- files'; find {home} -type f -printf '%P %s\\n'; exit $rc"
    )
    res = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=tmp_path,
        timeout=600,
    )
    assert res.returncode not in (0, 3), res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "no space left" in errors[0] and str(home) in errors[0], res.stderr[-3000:]
    check_console(res)
    files = res.stdout.split("--- files", 1)[1].split()
    assert not any(name.endswith(".part") for name in files), files


def test_a_bucket_over_its_quota_stops_the_run_with_one_line(
    scene: dict[str, Path], tmp_path: Path, s3_server: servers.Server, mongo_server: servers.Server, server_logs: Path
) -> None:
    """A full MinIO answers 507 XMinioStorageFull (the proxy answers in its name)."""
    with servers.fault_proxy(s3_server.port, server_logs) as proxy:
        env = environment(tmp_path, proxy.port, mongo_server.port)
        proxy.reject(f"PUT /{env['MINIO_BUCKET_NAME_COMPOSITES']}/".encode(), 507, "XMinioStorageFull")
        res = run_cli(run_args(scene, "plain", tmp_path / "out"), env, tmp_path, timeout=600)
        assert proxy.status()["rejected"]
    assert res.returncode not in (0, 3), res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, res.stderr[-3000:]
    assert "XMinioStorageFull" in errors[0] and env["MINIO_BUCKET_NAME_COMPOSITES"] in errors[0], errors
    check_console(res)
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{s3_server.port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    listing = s3.list_objects_v2(Bucket=env["MINIO_BUCKET_NAME_COMPOSITES"])
    assert not listing.get("Contents"), listing.get("Contents")  # nothing partial under an id-addressed key
