# The two commands of the README: `make reproduce` (main job) and `make test` (tests).
# Both set up a virtual environment from nothing on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PRESET ?= auto
# the data root: ../shared/data beside the clone unless MVCPAPER_DATA says otherwise
export MVCPAPER_DATA ?= $(abspath ../shared/data)

.PHONY: setup reproduce test test-fast bench notebooks clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[notebooks,test,browser,distributed]'
	$(BIN)/python -m ipykernel install --sys-prefix --name mvcpaper --display-name "Python (mvcpaper)"
	touch $@

reproduce: setup
	$(BIN)/mvcpaper reproduce --preset $(PRESET)

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not realdata"

bench: setup
	$(BIN)/python benchmarks/bench_extraction.py
	$(BIN)/python benchmarks/bench_kmeans.py
	$(BIN)/python benchmarks/bench_tsne.py
	$(BIN)/python benchmarks/bench_knn.py
	$(BIN)/python benchmarks/bench_deep.py
	$(BIN)/python benchmarks/bench_deepcluster.py
	$(BIN)/python benchmarks/bench_scale.py

notebooks: setup
	$(BIN)/python scripts/make_notebooks.py

clean:
	rm -rf runs tables figures .pytest_cache
