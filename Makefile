# The few verbs people type. Everything is built by CMake (see CMakePresets.json).
JOBS ?= $(shell nproc)
CTEST_FLAGS ?= --output-on-failure -j $(JOBS)
FATAL ?= $(if $(CI),ON,OFF)
FUZZ_SECONDS ?= 20

.PHONY: all build test test-deps format-check test-release test-asan test-tsan test-arm demo bench compression-report npu-report interop fuzz format deps clean

all: build

build:
	cmake --preset release -DEVLM_FATAL_WARNINGS=$(FATAL) >/dev/null
	cmake --build --preset release -j $(JOBS)

test: test-deps
	@$(MAKE) --no-print-directory test-release test-asan test-tsan test-arm

# the packages the tests build with (installed when run as root, else the command is printed)
test-deps:
	@scripts/deps.sh --quiet --arm

test-release: build
	cd build/release && ctest $(CTEST_FLAGS)

test-asan:
	cmake --preset asan -DEVLM_FATAL_WARNINGS=$(FATAL) >/dev/null
	cmake --build --preset asan -j $(JOBS)
	cd build/asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest $(CTEST_FLAGS)

# ThreadSanitizer (the tsan preset; it cannot be combined with ASan): the concurrency contract of
# include/evlm.h (test_concurrency: several contexts of one model decoding at once) and the tests
# that drive the thread pool hardest. Only these are built. No suppressions: any report fails.
TSAN_TESTS ?= test_concurrency|test_llama_fixture|test_greedy_head|test_siglip|test_kv|test_train_ops
test-tsan:
	cmake --preset tsan -DEVLM_FATAL_WARNINGS=$(FATAL) >/dev/null
	cmake --build --preset tsan -j $(JOBS) --target $(subst |, ,$(TSAN_TESTS))
	cd build/tsan && TSAN_OPTIONS="halt_on_error=1 $(TSAN_OPTIONS)" \
	  ctest $(CTEST_FLAGS) -R '^($(TSAN_TESTS))$$'

# aarch64 cross build (cmake/aarch64-linux-gnu.cmake): the suite under qemu-user, -cpu max
# (dotprod), plus test_kernels_baseline on a Cortex-A53 (plain NEON); tools from scripts/deps.sh.
# qemu runs float code ~70x slower than native: ARM_SKIP names the tests left to the native
# builds (each over 3 minutes under qemu); `make test-arm ARM_SKIP=` runs everything.
ARM_SKIP ?= test_lookahead|test_quantize|cli_quantize|test_train_vision|test_kquants_model
test-arm:
	@command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64-static >/dev/null || \
	  { echo "test-arm: needs gcc-aarch64-linux-gnu and qemu-user-static: run scripts/deps.sh --arm"; exit 1; }
	cmake --preset aarch64 -DEVLM_FATAL_WARNINGS=$(FATAL) >/dev/null
	cmake --build --preset aarch64 -j $(JOBS)
	@[ -z "$(ARM_SKIP)" ] || echo "test-arm: not run under qemu (too slow): $(ARM_SKIP)"
	cd build/aarch64 && ctest $(CTEST_FLAGS) --timeout 300 $(if $(ARM_SKIP),-E '^($(ARM_SKIP))$$')

demo:
	@scripts/deps.sh --quiet
	@$(MAKE) --no-print-directory build
	@scripts/demo.sh

bench: build
	@scripts/bench.sh

compression-report: build
	@python3 scripts/compression_report.py

npu-report: build
	@python3 scripts/npu_report.py

# llama.cpp runs evlm's GGUF files and evlm runs llama.cpp's (issue 15): builds llama.cpp once
# (scripts/llamacpp.sh; LLAMACPP_BIN=DIR uses a build elsewhere), runs tests/interop/ and writes
# docs/INTEROP.md. Not part of make test (the llama.cpp build alone takes ~15 minutes).
interop: build
	@tests/interop/run.sh

fuzz:
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz -j $(JOBS)
	@scripts/fuzz.sh build/fuzz $(FUZZ_SECONDS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# every C file as .clang-format lays it out (make format fixes what this reports); make test runs
# it as the CTest test format_check of the release build
format-check:
	@clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h') && echo "format-check: ok"

deps:
	scripts/deps.sh --arm

clean:
	rm -rf build
