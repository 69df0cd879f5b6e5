# rsmon: `make demo` and `make test` work on a fresh machine (they create .venv and install everything).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.rsmon-installed
DEMO_OUT ?= demo-output

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rsmon demo --out $(DEMO_OUT)

# two workers, each test module on one (tests/conftest.py): about 10 min instead of 15 on 2 cores
test: $(STAMP)
	$(PY) -m pytest -q -rs -n 2 --dist loadfile

# Benchmark against HARP (needs Debian packages harp and time); see docs/benchmarks.md
bench: $(STAMP)
	$(PY) benchmarks/bench_l3_no2.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
