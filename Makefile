# The README's two commands: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.helios-installed

.PHONY: demo demo-backtest test bench soak lint install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall when the package metadata changes.
$(STAMP): setup.cfg pyproject.toml | $(PY)
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# EXCHANGE: the venue the local exchange speaks and Freqtrade trades on (binance, bybit, okx, gate, kucoin).
EXCHANGE ?= binance
demo: $(STAMP)
	$(PY) -m helios_orderflow.devtools.demo --venue $(EXCHANGE)

demo-backtest: $(STAMP)
	$(PY) -m helios_orderflow.devtools.demo --backtest --venue $(EXCHANGE)

# Tests that mostly wait on markets, bots and exchanges running in real time: make test runs them in parallel.
REALTIME_TESTS = tests/test_venue_*.py tests/test_feed_parity.py tests/test_strategy_live.py \
	tests/test_exchange_acceptance.py tests/test_feed_fidelity.py tests/test_strategy_whitelist.py
test: $(STAMP)
	$(PY) -m ruff check helios_orderflow dashboard tests user_data
	$(PY) -m mypy helios_orderflow dashboard
	@# The tests that mostly wait on markets, bots and exchanges running in real time (REALTIME_TESTS) run on
	@# 4 pytest-xdist workers, one file each, beside the rest of the suite, which runs in order in one process.
	@# Their output is shown when both are done.
	@$(PY) -m pytest -q -n 4 --dist loadfile -p no:cacheprovider $(REALTIME_TESTS) > .realtime-tests.log 2>&1 & \
	realtime_pid=$$!; \
	$(PY) -m pytest -q $(foreach f,$(REALTIME_TESTS),--ignore-glob='*$(f)') $(PYTEST_ARGS); main=$$?; \
	wait $$realtime_pid; realtime=$$?; \
	echo "---- real-time tests ($(REALTIME_TESTS), 4 workers) ----"; cat .realtime-tests.log; \
	test $$main -eq 0 -a $$realtime -eq 0

bench: $(STAMP)
	$(PY) -m helios_orderflow.devtools.bench $(BENCH_ARGS)

# Reliability soak: 10 pairs at 10x Binance's rate with faults on a schedule (see docs/reliability.md).
MINUTES ?= 30
soak: $(STAMP)
	$(PY) -m helios_orderflow.devtools.soak --minutes $(MINUTES) $(SOAK_ARGS)

# The lint the project holds to (also the first steps of `make test`): ruff, then mypy (its settings: setup.cfg).
# We do not run `ruff format`: the code keeps its hand-wrapped 120-column layout.
lint: $(STAMP)
	$(PY) -m ruff check helios_orderflow dashboard tests user_data
	$(PY) -m mypy helios_orderflow dashboard

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache
