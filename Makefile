# Developer entry points. `make setup` then `make test` is all a new developer (and CI) needs.
VENVS := .venv-3.13 .venv-3.13t .venv-3.14 .venv-3.15
PYTEST_ARGS ?=

.PHONY: setup build test test-3.13 test-3.13t matrix matrix-rest lint stress memcheck bench clean

setup:
	bash scripts/setup.sh

# Rebuild the C engine in place for every interpreter (warnings are errors).
build:
	@for v in $(VENVS); do \
	  [ -x $$v/bin/python ] || continue; \
	  PYTEST_THREADPOOL_WERROR=1 $$v/bin/python setup.py -q build_ext --inplace --build-temp build/temp-$$v >/dev/null || exit 1; \
	done

lint:
	.venv-3.13/bin/ruff check $(wildcard src tests bench examples)
	.venv-3.13/bin/ruff format --check $(wildcard src tests bench examples)

test: build lint test-3.13 test-3.13t

# The suite, then the examples run both sequentially and in the pool.
test-3.13:
	.venv-3.13/bin/python -m pytest $(PYTEST_ARGS)
	.venv-3.13/bin/python -m pytest examples -q -p no:cacheprovider
	.venv-3.13/bin/python -m pytest examples -q -p no:cacheprovider --threadpool auto

test-3.13t:
	.venv-3.13t/bin/python -m pytest $(PYTEST_ARGS)
	.venv-3.13t/bin/python -m pytest examples -q -p no:cacheprovider
	.venv-3.13t/bin/python -m pytest examples -q -p no:cacheprovider --threadpool auto

# The suite on every supported pytest (3.13t) and on the newest pytest on 3.13, 3.14 and 3.15,
# one venv per cell; `matrix-rest` leaves out the two cells `make test` already ran (CI runs both).
matrix: build
	bash scripts/matrix.sh

matrix-rest: build
	bash scripts/matrix.sh --rest

# Repeat the concurrency-heavy tests many times on the free-threaded build.
STRESS_RUNS ?= 20
stress: build
	bash scripts/stress.sh $(STRESS_RUNS)

# Engine tests under valgrind on the GIL build.
memcheck: build
	bash scripts/memcheck.sh

bench: build
	.venv-3.13t/bin/python bench/run.py
	.venv-3.13t/bin/python bench/xdist.py

clean:
	rm -rf build src/pytest_threadpool/*.so .pytest_cache
