"""ASTER GDEM v3 (1 x 1 degree tiles ``ASTGTMV003_NxxWyyy_dem.tif``) from a local folder, an
HTTP(S)/S3 mirror, or NASA Earthdata (bearer token). Zipped tiles are unpacked on the fly."""

from __future__ import annotations

import contextlib
import io
import math
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from landcoverpy.errors import ProviderError

EARTHDATA_URL = "https://e4ftl01.cr.usgs.gov/ASTT/ASTGTM.003/2000.03.01"


def aster_tile_name(lat: int, lon: int) -> str:
    """The tile whose south-west corner is (lat, lon): ``ASTGTMV003_N37W076``."""
    return f"ASTGTMV003_{'N' if lat >= 0 else 'S'}{abs(lat):02d}{'E' if lon >= 0 else 'W'}{abs(lon):03d}"


def aster_tiles_for_bounds(west: float, south: float, east: float, north: float) -> list[str]:
    names = []
    for lat in range(math.floor(south), math.ceil(north)):
        for lon in range(math.floor(west), math.ceil(east)):
            names.append(aster_tile_name(lat, lon))
    return names


class DEMSource:
    """Where ASTER tiles come from: ``source`` is a folder path, or an http(s) base URL (with an
    Earthdata token when needed). Tiles are ``{name}_dem.tif`` or ``{name}.zip``."""

    def __init__(self, source: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.source, self.token, self.timeout = source, token, timeout

    def describe(self) -> str:
        return f"ASTER GDEM from {self.source}"

    @contextlib.contextmanager
    def open_tile(self, name: str) -> Iterator[IO[bytes] | None]:
        """The tile's GeoTIFF bytes as a stream, or None when the source has no such tile (open
        ocean has no ASTER tile)."""
        if self.source.startswith(("http://", "https://")):
            import requests

            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            for candidate in (f"{name}_dem.tif", f"{name}.zip"):
                resp = requests.get(f"{self.source.rstrip('/')}/{candidate}", headers=headers, stream=True,
                                    timeout=self.timeout)
                if resp.status_code == 404:
                    resp.close()
                    continue
                if resp.status_code in (401, 403):
                    resp.close()
                    raise ProviderError(f"{self.describe()}: {candidate} refused (HTTP {resp.status_code}); "
                                        "check EARTHDATA_TOKEN")
                resp.raise_for_status()
                try:
                    if candidate.endswith(".zip"):
                        yield _dem_from_zip(io.BytesIO(resp.content), name)
                    else:
                        resp.raw.decode_content = True
                        yield resp.raw
                finally:
                    resp.close()
                return
            yield None
            return
        folder = Path(self.source)
        if not folder.is_dir():
            raise ProviderError(f"DEM source folder {folder} does not exist; set DEM_SOURCE")
        tif, zipped = folder / f"{name}_dem.tif", folder / f"{name}.zip"
        if tif.is_file():
            with open(tif, "rb") as fh:
                yield fh
        elif zipped.is_file():
            with open(zipped, "rb") as fh:
                yield _dem_from_zip(fh, name)
        else:
            yield None


def _dem_from_zip(stream: IO[bytes], name: str) -> IO[bytes]:
    with zipfile.ZipFile(stream) as zf:
        member = next((n for n in zf.namelist() if n.endswith(f"{name}_dem.tif")), None)
        if member is None:
            raise ProviderError(f"{name}.zip holds no {name}_dem.tif")
        return io.BytesIO(zf.read(member))
