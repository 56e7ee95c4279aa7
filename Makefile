# Two entry points: `make demo` and `make test`.  Everything they need is
# installed into .venv by the `install` target.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-stamp
DEMO   ?= demo-out
PYTEST_ARGS ?=

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU build of torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(PIP) install -q "torch==2.13.0"
	# STAC API, pgstac and the browser test need Debian PostgreSQL/PostGIS/Chromium
	sh infra/pgstac/install-system-deps.sh
	$(PIP) install -q -e ".[test,gateway,stream,stac,serve]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	rm -rf $(DEMO)
	$(VENV)/bin/spectralearth synth $(DEMO)/archive --tiles 16 --tile-size 384 --seed 7
	$(VENV)/bin/spectralearth build $(DEMO)/archive --out $(DEMO) --workers 2
	$(VENV)/bin/spectralearth overlaps --catalog $(DEMO)/catalog --cluster sync --plot $(DEMO)/overlaps.png > /dev/null
	@echo
	@echo "Demo finished. Look at:"
	@echo "  $(DEMO)/archive                 synthetic EnMAP L2A products"
	@echo "  $(DEMO)/catalog                 STAC collection + tiles.parquet, overlap graph, combinations"
	@echo "  $(DEMO)/catalog/patches.parquet the patch plan, a table of parquet parts (views.parquet beside it, plan-report.json)"
	@echo "  $(DEMO)/cube.zarr               the versioned patch cube: spectralearth versions $(DEMO)/cube.zarr"
	@echo "                                  python -c \"from spectralearth.platform import open_cube; print(open_cube('$(DEMO)/cube.zarr'))\""
	@echo "  $(DEMO)/build-report.json       counts per stage, quarantined products, timings"
	@echo "  $(DEMO)/overlaps.png            map of the footprints coloured by overlap degree"

# Two pytest workers, one per core; a module's tests stay together (module fixtures are built once).
test: install
	$(PY) -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/bench_index.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .hypothesis
