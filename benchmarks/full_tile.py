"""Benchmark: a whole Sentinel-2 tile through `landcoverpy run`, end to end, with 1 and with 2
Dask workers: seconds per stage, peak RSS of each process, and the 2-worker speed-up.

The tile is generated (nothing to download): an MGRS tile's grid (18SVG, UTM 18N) of `--size`
x `--size` px at 10 m (10980 = the full tile), 3 seasons x 4 L2A products, every band at its
native resolution (10, 20, 60 m) plus SCL, a landscape of 5 categories x 2 subcategories drawn as
smooth random regions with their own spectra and seasonal cycles, and clouds and their shadows
in every product (random blobs over 10-60 % of the tile, flagged in SCL, bright in the bands).
`--points` labelled points (default 2000) fall on the landscape's classes, 10 % left out as held-out
points. The products are written once under `--work` (default a temporary folder) and reused.

    python benchmarks/full_tile.py [--size 10980] [--points 2000] [--workers 1 2] [--work DIR] [--profile]
                                   [--gdal-threads N]

Prints one line per stage and run, the whole run's seconds, the largest peak RSS of any worker
process and of the client process, the 2-worker speed-up per stage, and the projection to the
487 Mediterranean tiles of the original paper (worker-hours). Measured tiles smaller than 10980
are projected by area (stage times grow with pixels; training does not) and the projection says so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TILE, EPSG, ORIGIN = "18SVG", "EPSG:32618", (399960.0, 4200000.0)
SEASONS = {
    "spring": ("2016-03-01", "2016-05-31"),
    "summer": ("2016-06-01", "2016-08-31"),
    "autumn": ("2016-09-01", "2016-11-30"),
}
CLASSES = {
    "water": ["sea", "lake"],
    "forest": ["broadleaf", "conifer"],
    "crops": ["cereal", "orchard"],
    "urban": ["dense", "sparse"],
    "bare": ["rock", "sand"],
}
TILE_PAPER = 487
PIXEL_STAGES = ("acquire", "composite", "classify")  # their work grows with the tile's pixels


def landscape(size: int, seed: int = 0) -> np.ndarray:
    """Subclass index (0..9) per 10 m pixel at 1/30 resolution (smooth regions), upsampled on use."""
    rng = np.random.default_rng(seed)
    coarse = max(4, size // 30)
    fields = rng.normal(size=(10, coarse // 8 + 2, coarse // 8 + 2))
    from scipy.ndimage import zoom

    smooth = np.stack([zoom(f, (coarse / (f.shape[0] - 1)), order=3)[:coarse, :coarse] for f in fields])
    return smooth.argmax(axis=0).astype("uint8")


def spectra(seed: int = 1) -> np.ndarray:
    """(10 subclasses, 3 seasons, 12 bands) surface reflectance x 10000."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(300, 3500, size=(10, 1, 12))
    season = rng.uniform(0.7, 1.3, size=(10, 3, 12))
    return base * season


def write_products(src: Path, size: int) -> None:
    import rasterio
    from rasterio.transform import from_origin

    from landcoverpy.sentinel2 import BAND_RESOLUTION, L2A_BANDS

    classes = landscape(size)
    spec = spectra()
    reflectance_bands = [b for b in L2A_BANDS if b != "SCL"]
    rng = np.random.default_rng(2)
    for si, (season, (start, _)) in enumerate(SEASONS.items()):
        for p in range(4):
            pid = f"S2B_MSIL2A_{season}_{p}_N0500_R011_T{TILE}"
            folder = src / pid
            if (folder / "product.json").is_file():
                continue
            folder.mkdir(parents=True, exist_ok=True)
            clouds = cloud_field(size, rng, rng.uniform(0.1, 0.6))
            bands = {}
            for band in L2A_BANDS:
                res = BAND_RESOLUTION[band]
                f = res // 10
                n = -(-size // f)
                cls = np.repeat(np.repeat(classes, 30 // f if 30 % f == 0 else 1, 0), 30 // f if 30 % f == 0 else 1, 1)
                cls = _fit(cls, n)
                cl = _fit(clouds[::f, ::f], n)
                if band == "SCL":
                    data = np.where(cl == 2, 9, np.where(cl == 1, 3, 4)).astype("uint8")
                    data[cls <= 1] = np.where(cl[cls <= 1] == 0, 6, data[cls <= 1])  # water
                else:
                    k = reflectance_bands.index(band)
                    data = spec[cls, si, k] * rng.normal(1, 0.05, size=cls.shape) + 1000  # L2A offset (baseline 04.00+)
                    data = np.where(cl == 2, 7000 + rng.normal(0, 300, size=cls.shape), data)
                    data = np.where(cl == 1, data * 0.35, data)
                    data = np.clip(data, 1, 20000).astype("uint16")
                profile = {
                    "driver": "GTiff",
                    "width": n,
                    "height": n,
                    "count": 1,
                    "dtype": data.dtype,
                    "crs": EPSG,
                    "transform": from_origin(*ORIGIN, res, res),
                    "nodata": 0,
                    "tiled": True,
                    "blockxsize": 512,
                    "blockysize": 512,
                    "compress": "deflate",
                    "predictor": 2,
                }
                with rasterio.open(folder / f"{band}.tif", "w", **profile) as dst:
                    dst.write(data, 1)
                bands[band] = f"{band}.tif"
            day = np.datetime64(start) + np.timedelta64(15 + 20 * p, "D")
            cover = float((clouds == 2).mean() * 100)
            (folder / "product.json").write_text(
                json.dumps(
                    {
                        "product_id": pid,
                        "tile": TILE,
                        "sensing_time": f"{day}T10:00:00",
                        "platform": "Sentinel-2B",
                        "level": "L2A",
                        "processing_baseline": "05.00",
                        "cloud_percentage": round(cover, 1),
                        "nodata_percentage": 0.0,
                        "bands": bands,
                    }
                )
            )


def _fit(a: np.ndarray, n: int) -> np.ndarray:
    out = a[:n, :n]
    if out.shape != (n, n):
        out = np.pad(out, ((0, n - out.shape[0]), (0, n - out.shape[1])), mode="edge")
    return out


def cloud_field(size: int, rng: np.random.Generator, cover: float) -> np.ndarray:
    """0 clear, 1 shadow, 2 cloud: smooth blobs covering about ``cover`` of the tile."""
    from scipy.ndimage import shift, zoom

    coarse = rng.normal(size=(size // 300 + 3, size // 300 + 3))
    field = zoom(coarse, size / (coarse.shape[0] - 1), order=3)[:size, :size]
    cloud = field > np.quantile(field, 1 - cover)
    shadow = shift(cloud.astype("uint8"), (size // 60, size // 80), order=0) > 0
    return np.where(cloud, 2, np.where(shadow, 1, 0)).astype("uint8")


def write_points(app: Path, size: int, n: int) -> None:
    from pyproj import Transformer

    classes = landscape(size)
    rng = np.random.default_rng(3)
    inside = min(size, 9995)  # the tile's own 100 km MGRS square (tiles overlap by 9.8 km)
    rows, cols = rng.uniform(5, inside - 5, n), rng.uniform(5, inside - 5, n)
    sub = classes[
        np.minimum((rows // 30).astype(int), classes.shape[0] - 1),
        np.minimum((cols // 30).astype(int), classes.shape[1] - 1),
    ]
    names = [(c, s) for c, subs in CLASSES.items() for s in subs]
    x, y = ORIGIN[0] + cols * 10, ORIGIN[1] - rows * 10
    lon, lat = Transformer.from_crs(EPSG, "EPSG:4326", always_xy=True).transform(x, y)
    lines = ["latitude,longitude,category,subcategory"]
    lines += [f"{la:.7f},{lo:.7f},{names[k][0]},{names[k][1]}" for la, lo, k in zip(lat, lon, sub)]
    held = [lines[0]] + lines[1::10]
    train = [lines[0]] + [line for i, line in enumerate(lines[1:]) if i % 10]
    (app / "dataset.csv").write_text("\n".join(train) + "\n")
    (app / "holdout.csv").write_text("\n".join(held) + "\n")
    (app / "seasons.json").write_text(json.dumps({k: {"start": a, "end": b} for k, (a, b) in SEASONS.items()}))
    (app / "lc_labels.json").write_text(json.dumps({c: i + 2 for i, c in enumerate(CLASSES)}))
    (app / "sl_labels.json").write_text(json.dumps({s: i + 2 for i, (_, s) in enumerate(names)}))


class PeakRSS:
    """Peak resident memory of a process and of each of its descendants, sampled every 0.5 s;
    also the CPU seconds the whole process tree had used at each sample (``cpu``: (unix time,
    seconds of every process, seconds of the Dask workers alone) triples), to say how many cores a
    stretch of the run kept busy, and how many of those were the workers'; and the machine's own
    CPU accounting at each sample (``machine``: user, kernel, I/O wait, idle seconds of all cores),
    which also counts what no process of the run is charged for (the kernel's writeback threads)
    and the time the cores stood idle while tasks waited on the disk."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peaks, self._stop = pid, {}, threading.Event()
        self.cpu: list[tuple[float, float, float]] = []
        self.machine: list[tuple[float, float, float, float]] = []
        # last CPU seconds seen per process, and whether it is a worker (exited ones keep theirs)
        self._cpu_of: dict[int, tuple[float, bool]] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        root = psutil.Process(self.pid)
        while not self._stop.is_set():
            try:
                for proc in [root, *root.children(recursive=True)]:
                    try:
                        rss, cmdline = proc.memory_info().rss, proc.cmdline()
                        times = proc.cpu_times()
                    except psutil.Error:
                        continue
                    kind = "client" if proc.pid == self.pid else "other"
                    if kind == "other" and any("spawn_main" in part or "forkserver" in part for part in cmdline):
                        kind = "worker"  # a Dask worker process (spawned by its nanny)
                    self._cpu_of[proc.pid] = (times.user + times.system, kind == "worker")
                    key = (proc.pid, kind)
                    self.peaks[key] = max(self.peaks.get(key, 0), rss)
            except psutil.Error:
                pass
            self.cpu.append(
                (
                    time.time(),
                    sum(c for c, _ in self._cpu_of.values()),
                    sum(c for c, worker in self._cpu_of.values() if worker),
                )
            )
            m = psutil.cpu_times()
            self.machine.append((m.user + m.nice, m.system + m.irq + m.softirq, m.iowait, m.idle))
            self._stop.wait(0.5)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        out: dict[str, float] = {}
        for (_, kind), rss in self.peaks.items():
            out[kind] = max(out.get(kind, 0.0), rss / 2**20)
        return out


def cores_by_kind(
    stream_csv: str, cpu: list[tuple[float, float, float]], machine: list[tuple[float, float, float, float]]
) -> dict[str, tuple[float, ...]]:
    """Mean cores the run's processes kept busy while each kind of task ran (its first start to
    its last stop, from the run's task stream), from the CPU samples: what a worker's task does
    on other threads (GDAL compressing) counts, which the task stream alone cannot show. Returns
    (every process, the workers alone) per kind: the difference is what the client, the scheduler
    and the nannies took from the cores; then, from ``machine`` (sampled with ``cpu``), the
    machine's user, kernel, I/O-wait and idle cores over the same span."""
    import csv
    import io

    spans: dict[str, list[float]] = {}
    for row in csv.DictReader(io.StringIO(stream_csv)):
        start = float(row["start_unix"])
        lo_hi = spans.setdefault(row["kind"], [start, start + float(row["seconds"])])
        lo_hi[0], lo_hi[1] = min(lo_hi[0], start), max(lo_hi[1], start + float(row["seconds"]))
    t = np.array([c[0] for c in cpu])
    series = [np.array([c[i] for c in cpu]) for i in (1, 2)] + [np.array([m[i] for m in machine]) for i in range(4)]
    out = {}
    for kind, (lo, hi) in spans.items():
        if hi - lo >= 2.0 and len(t) > 1:  # shorter than a few samples: not measurable
            out[kind] = tuple(float((np.interp(hi, t, v) - np.interp(lo, t, v)) / (hi - lo)) for v in series)
    return out


def run(src: Path, app: Path, home: Path, workers: int, profile: bool = False, gdal_threads: int = 0) -> dict:
    env = (
        os.environ
        | ({"GDAL_NUM_THREADS": str(gdal_threads)} if gdal_threads else {})
        | {
            "LANDCOVERPY_HOME": str(home),
            "TMP_DIR": str(home / "tmp"),
            "DASK_N_WORKERS": str(workers),
            "DASK_THREADS_PER_WORKER": "1",
            "DASK_CLUSTER_IP": "",
        }
    )
    cmd = [
        sys.executable,
        "-m",
        "landcoverpy.cli",
        "run",
        "--provider",
        "local",
        "--source",
        str(src),
        "--no-progress",
        "--dataset",
        str(app / "dataset.csv"),
        "--seasons",
        str(app / "seasons.json"),
        "--lc-labels",
        str(app / "lc_labels.json"),
        "--sl-labels",
        str(app / "sl_labels.json"),
        "--holdout",
        str(app / "holdout.csv"),
    ] + (["--profile"] if profile else [])
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    rss = PeakRSS(proc.pid)
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    peaks = rss.stop()
    if proc.returncode != 0:
        raise SystemExit(f"landcoverpy run failed ({proc.returncode}):\n{err[-3000:]}")
    stages = {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\w+)\s+([\d.]+) s\s+(?:done|reused)", out, re.M)}
    accuracy = re.search(r"category overall accuracy ([\d.]+)", out)
    tasks = out.split("Dask tasks on ", 1)[1].splitlines()[1:] if "Dask tasks on " in out else []
    tasks = [line.strip() for line in tasks if line.startswith("  ")]
    stream = home / "store" / "classification-maps" / "latest" / "tasks.csv"
    if tasks and stream.exists():
        cores = cores_by_kind(stream.read_text(encoding="utf-8"), rss.cpu, rss.machine)
        busy = {
            kind: f"; {c[0]:.2f} cores busy, {c[1]:.2f} by the workers; machine user {c[2]:.2f}, "
            f"kernel {c[3]:.2f}, I/O wait {c[4]:.2f}, idle {c[5]:.2f}"
            for kind, c in cores.items()
        }
        tasks = [line + busy.get(line.split()[0], "") for line in tasks]
    return {
        "seconds": seconds,
        "stages": stages,
        "rss": peaks,
        "accuracy": float(accuracy.group(1)) if accuracy else None,
        "tasks": tasks,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--points", type=int, default=2000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument(
        "--work",
        type=Path,
        default=None,
        help="keep inputs and each run's home there (default: a temporary folder, removed as it goes)",
    )
    ap.add_argument(
        "--gdal-threads",
        type=int,
        default=0,
        help="GDAL threads per worker (default: the workflow's, cores / workers); 1 makes a worker one "
        "core, so 1 vs 2 workers compares equal resources per worker",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="run with --profile and print where the tasks' time went (workers busy per kind of task)",
    )
    args = ap.parse_args()
    keep = args.work is not None
    work = args.work or Path(tempfile.mkdtemp(prefix="full-tile-"))
    try:
        _main(args, work, keep)
    finally:
        if not keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


def _main(args: argparse.Namespace, work: Path, keep: bool) -> None:
    """The benchmark proper. Without ``keep`` each configuration's home is removed once measured:
    a full-size tile needs ~30 GB per home (products + composites) besides ~12 GB of inputs."""
    src, app = work / f"src-{args.size}", work / f"app-{args.size}"
    src.mkdir(parents=True, exist_ok=True)
    app.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    write_products(src, args.size)
    write_points(app, args.size, args.points)
    print(
        f"tile {TILE} {args.size} x {args.size} px (10 m), 3 seasons x 4 L2A products, {args.points} points; "
        f"inputs ready in {time.perf_counter() - t:.0f} s under {work}",
        flush=True,
    )
    results = {}
    for n in args.workers:
        home = work / f"home-{args.size}-{n}w"
        if home.exists():
            import shutil

            shutil.rmtree(home)
        results[n] = r = run(src, app, home, n, args.profile, args.gdal_threads)
        if not keep:
            import shutil

            shutil.rmtree(home, ignore_errors=True)
        print(
            f"\n{n} worker(s): {r['seconds']:.0f} s, held-out category accuracy {r['accuracy']}, peak RSS "
            + ", ".join(f"{k} {v:.0f} MiB" for k, v in sorted(r["rss"].items())),
            flush=True,
        )
        for stage, s in r["stages"].items():
            print(f"  {stage:<10}{s:>8.1f} s")
        for line in r["tasks"]:
            print(f"    task {line}")
    if 1 in results and 2 in results:
        a, b = results[1], results[2]
        print(
            "\n2 workers vs 1: "
            + ", ".join(
                f"{st} {a['stages'][st] / max(b['stages'].get(st, 0), 1e-9):.2f}x"
                for st in a["stages"]
                if st in b["stages"]
            )
            + f"; whole run {a['seconds'] / b['seconds']:.2f}x"
        )
    scale = (10980 / args.size) ** 2
    nw = min(results, key=lambda n: results[n]["seconds"])
    best = results[nw]
    per_pixel = sum(best["stages"].get(st, 0.0) for st in PIXEL_STAGES)
    tile_s = best["seconds"] + per_pixel * (scale - 1)  # the other stages grow with points, not pixels
    note = (
        ""
        if args.size == 10980
        else (
            f" (measured at {args.size} px: {', '.join(PIXEL_STAGES)} scaled x{scale:.1f} "
            "by area, the rest as measured)"
        )
    )
    print(
        f"projection{note}: {tile_s / 60:.1f} min per tile with {nw} worker(s); the paper's {TILE_PAPER} tiles: "
        f"{tile_s * TILE_PAPER * nw / 3600:.0f} worker-hours"
    )


if __name__ == "__main__":
    main()
