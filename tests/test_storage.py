"""The same storage suite against both backends: local directory and S3 (moto_server)."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from landcoverpy.config import Settings
from landcoverpy.errors import AuthenticationError, InvalidKeyError, ServiceUnavailableError, StorageError
from landcoverpy.storage import LocalStore, ObjectStore, S3Store, join_key, open_store, safe_key_part
from tests.conftest import make_settings


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return open_store(make_settings(tmp_path))
    server = request.getfixturevalue("s3_server")
    settings = make_settings(
        tmp_path, MINIO_HOST="127.0.0.1", MINIO_PORT=server.port, MINIO_ACCESS_KEY="k", MINIO_SECRET_KEY="s"
    )
    return open_store(settings)


@pytest.fixture()
def bucket() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def test_put_get_exists_list_delete(store: ObjectStore, bucket: str, tmp_path: Path) -> None:
    store.ensure_bucket(bucket)
    assert bucket in store.list_buckets()
    src = tmp_path / "src.bin"
    payload = np.random.default_rng(0).bytes(3 * 1024 * 1024 + 17)
    src.write_bytes(payload)

    store.put_file(bucket, "a/b/file.bin", src)
    store.put_stream(bucket, "a/c/stream.bin", io.BytesIO(b"hello"))
    store.put_json(bucket, "meta.json", {"x": 1})

    assert store.exists(bucket, "a/b/file.bin")
    assert not store.exists(bucket, "a/b/missing.bin")
    assert store.size(bucket, "a/b/file.bin") == len(payload)
    assert store.list(bucket, "a/") == ["a/b/file.bin", "a/c/stream.bin"]
    assert store.list(bucket) == ["a/b/file.bin", "a/c/stream.bin", "meta.json"]
    assert store.get_json(bucket, "meta.json") == {"x": 1}
    assert store.get_bytes(bucket, "a/c/stream.bin") == b"hello"

    dest = store.get_file(bucket, "a/b/file.bin", tmp_path / "out" / "copy.bin")
    assert dest.read_bytes() == payload
    with store.open(bucket, "a/b/file.bin") as fh:
        assert fh.read(10) == payload[:10]

    store.delete(bucket, "a/b/file.bin")
    assert not store.exists(bucket, "a/b/file.bin")
    assert store.delete_prefix(bucket, "a/") == 1
    assert store.list(bucket) == ["meta.json"]


def test_missing_object_is_a_clear_error(store: ObjectStore, bucket: str, tmp_path: Path) -> None:
    store.ensure_bucket(bucket)
    with pytest.raises(StorageError, match="nope.tif"):
        store.get_file(bucket, "nope.tif", tmp_path / "x")


def test_list_of_unknown_bucket_is_empty(store: ObjectStore) -> None:
    assert store.list(f"never-{uuid.uuid4().hex[:8]}") == []


@pytest.mark.parametrize("key", ["../escape", "/abs/path", "a/../../b", "a//b", "a\\b"])
def test_unsafe_keys_are_rejected(store: ObjectStore, bucket: str, key: str) -> None:
    with pytest.raises(InvalidKeyError):
        store.put_bytes(bucket, key, b"x")


def test_raster_written_is_read_in_place(store: ObjectStore, bucket: str, tmp_path: Path) -> None:
    data = np.arange(64 * 48, dtype="uint16").reshape(64, 48)
    path = tmp_path / "r.tif"
    profile = dict(
        driver="GTiff",
        width=48,
        height=64,
        count=1,
        dtype="uint16",
        crs="EPSG:32630",
        transform=from_origin(500000, 4000000, 10, 10),
        nodata=0,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    store.put_file(bucket, "tiles/30SUF/r.tif", path)
    uri = store.raster_uri(bucket, "tiles/30SUF/r.tif")
    if isinstance(store, S3Store):
        assert uri.startswith("s3://")
    with store.rasterio_env(), rasterio.open(uri) as src:
        assert src.crs.to_epsg() == 32630
        np.testing.assert_array_equal(src.read(1), data)
        window = rasterio.windows.Window(5, 7, 10, 12)
        np.testing.assert_array_equal(src.read(1, window=window), data[7:19, 5:15])


def test_safe_key_part_sanitises_user_data() -> None:
    assert safe_key_part("30SUF") == "30SUF"
    assert safe_key_part("Forest / dense") == "Forest_dense"
    assert safe_key_part("../../etc") == "etc"
    assert join_key("maps", safe_key_part("../x"), "a.tif") == "maps/x/a.tif"
    with pytest.raises(InvalidKeyError):
        safe_key_part("..")
    with pytest.raises(InvalidKeyError):
        join_key("a", "..", "b")


def test_unreachable_s3_fails_fast_naming_the_address(tmp_path: Path) -> None:
    from tests.servers import free_port

    port = free_port()
    settings = make_settings(tmp_path, MINIO_HOST="127.0.0.1", MINIO_PORT=port, CONNECT_TIMEOUT=2)
    with pytest.raises(ServiceUnavailableError, match=f"127.0.0.1:{port}"):
        open_store(settings)


def test_unwritable_home_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="LANDCOVERPY_HOME"):
        LocalStore(blocker / "sub").check()


def test_s3_store_pickles_without_client(s3_server: object, tmp_path: Path) -> None:
    import pickle

    settings: Settings = make_settings(tmp_path, MINIO_HOST="127.0.0.1", MINIO_PORT=s3_server.port)  # type: ignore[attr-defined]
    store = open_store(settings)
    clone = pickle.loads(pickle.dumps(store))
    clone.ensure_bucket("pickled-bucket")
    assert "pickled-bucket" in store.list_buckets()


def test_wrong_s3_credentials_are_a_clear_error(tmp_path: Path, server_logs: Path) -> None:
    from tests import servers

    with servers.moto_server(server_logs, auth=True) as server:
        good = make_settings(
            tmp_path,
            MINIO_HOST="127.0.0.1",
            MINIO_PORT=server.port,
            MINIO_ACCESS_KEY=server.extra["access_key"],
            MINIO_SECRET_KEY=server.extra["secret_key"],
        )
        store = open_store(good)
        store.put_bytes("auth-bucket", "k", b"v")
        assert store.get_bytes("auth-bucket", "k") == b"v"
        bad = make_settings(
            tmp_path,
            MINIO_HOST="127.0.0.1",
            MINIO_PORT=server.port,
            MINIO_ACCESS_KEY="AKIAWRONGWRONGWRONG0",
            MINIO_SECRET_KEY="nope",
        )
        with pytest.raises(AuthenticationError, match="MINIO_ACCESS_KEY"):
            open_store(bad)
