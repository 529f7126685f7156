# The few verbs people type. Everything is built by CMake (see CMakePresets.json).
JOBS ?= $(shell nproc)
CTEST_FLAGS ?= --output-on-failure -j $(JOBS)
FATAL ?= $(if $(CI),ON,OFF)
FUZZ_SECONDS ?= 20

.PHONY: all build test test-release test-asan demo bench compression-report fuzz format deps clean

all: build

build:
	cmake --preset release -DEVLM_FATAL_WARNINGS=$(FATAL) >/dev/null
	cmake --build --preset release -j $(JOBS)

test: test-release test-asan

test-release: build
	cd build/release && ctest $(CTEST_FLAGS)

test-asan:
	cmake --preset asan -DEVLM_FATAL_WARNINGS=$(FATAL) >/dev/null
	cmake --build --preset asan -j $(JOBS)
	cd build/asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest $(CTEST_FLAGS)

demo:
	@scripts/deps.sh --quiet
	@$(MAKE) --no-print-directory build
	@scripts/demo.sh

bench: build
	@scripts/bench.sh

compression-report: build
	@python3 scripts/compression_report.py

fuzz:
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz -j $(JOBS)
	@scripts/fuzz.sh build/fuzz $(FUZZ_SECONDS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

deps:
	scripts/deps.sh

clean:
	rm -rf build
