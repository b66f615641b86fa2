# Two entry points (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup system-tools demo lint docs test test-slow benchmark clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU build of PyTorch (a plain `torch` requirement would pull a multi-GB CUDA build)
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[all,test]"
	touch $@

demo: setup
	$(BIN)/landcoverpy demo --output-dir ./demo-output

# The default suite (`pytest`, under 15 minutes on 2 cores), then the cases marked slow
# (kill/resume on real workers, the demo on real servers): CI runs both.
# Both passes spread the test files over TEST_WORKERS processes (pytest-xdist); a file stays on
# one worker (--dist loadfile), so its module fixtures are built once and its servers are its
# worker's own. Most cases wait on servers, subprocesses and sockets, so two workers on two
# cores finish well before one. TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)
test: setup system-tools lint docs
	$(BIN)/python -m pytest $(XDIST)
	$(BIN)/python -m pytest -m slow $(XDIST)

# docker-compose (Debian's v1.29) renders and checks compose files without an engine; the
# deployment tests use it when present and skip otherwise. Chromium renders report.html in the
# report test (skipped without it); Debian's python3-qgis opens the maps with their styles in the
# QGIS test (skipped without it). A CJK font lets legends draw class names in any script (the
# names are also in the PNG text and the COG tags whatever the fonts). Ceph's S3 gateway
# (radosgw, on a one-OSD in-memory cluster the tests start) checks every request's signature and
# bucket policy, which the share-link and public-maps tests need (moto cannot).
# In CI (CI=true) a tool that could not be installed fails the run instead of skipping its tests.
CI_FAILS = [ "$$CI" != true ] || { echo "CI: a system tool the suite needs is missing" >&2; exit 1; }
system-tools:
	@command -v docker-compose >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && apt-get install -y -qq docker-compose) >/dev/null 2>&1 \
	  || { echo "docker-compose not installed: compose validation tests will be skipped"; $(CI_FAILS); }; }
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get install -y -qq chromium || (apt-get update -qq && apt-get install -y -qq chromium)) >/dev/null 2>&1 \
	  || { echo "chromium not installed: the report's browser test will be skipped"; $(CI_FAILS); }; }
	@/usr/bin/python3 -c "import qgis.core" >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get install -y -qq python3-qgis || (apt-get update -qq && apt-get install -y -qq python3-qgis)) >/dev/null 2>&1 \
	  || { echo "python3-qgis not installed: the test opening the maps in QGIS will be skipped"; $(CI_FAILS); }; }
	@fc-list 2>/dev/null | grep -qi "wenquanyi" || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get install -y -qq fonts-wqy-microhei || (apt-get update -qq && apt-get install -y -qq fonts-wqy-microhei)) >/dev/null 2>&1 \
	  || { echo "fonts-wqy-microhei not installed: legends draw CJK class names as boxes"; $(CI_FAILS); }; }
	@command -v radosgw >/dev/null 2>&1 && command -v ceph-osd >/dev/null 2>&1 && command -v ceph-mon >/dev/null 2>&1 \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq radosgw ceph-mon ceph-osd \
	      || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq radosgw ceph-mon ceph-osd)) >/dev/null 2>&1 \
	  || { echo "Ceph's radosgw not installed: the S3 authentication tests (share links, public maps) will be skipped"; $(CI_FAILS); }; }

# Style and types (configured in pyproject.toml): ruff lint + format check, mypy.
lint: setup
	$(BIN)/ruff check landcoverpy tests benchmarks docs
	$(BIN)/ruff format --check landcoverpy tests benchmarks docs
	$(BIN)/mypy

# The documentation site (MkDocs Material; references generated from the code) into ./site.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test-slow: setup
	$(BIN)/python -m pytest -m slow $(XDIST)

benchmark: setup
	$(BIN)/python benchmarks/composite_kernel.py
	$(BIN)/python benchmarks/composite_memory.py
	$(BIN)/python benchmarks/acquire_streaming.py
	$(BIN)/python benchmarks/aoi_fetch.py
	$(BIN)/python benchmarks/abundance_inference.py
	$(BIN)/python benchmarks/classify_throughput.py
	$(BIN)/python benchmarks/train_time.py
	$(BIN)/python benchmarks/jp2_read.py
	$(BIN)/python benchmarks/cog_overviews.py
	$(BIN)/python benchmarks/sieve_memory.py
	$(BIN)/python benchmarks/full_tile.py  # a whole 10980 px tile twice (1 and 2 workers): about an hour on 2 cores

clean:
	rm -rf $(VENV) landcover-data demo-output site
