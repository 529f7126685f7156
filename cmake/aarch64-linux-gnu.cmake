# aarch64-linux-gnu.cmake - cross build for 64-bit ARM Linux from a Debian 12 x86-64 host
# (`cmake --preset aarch64`, `make test-arm`). Compiler: gcc-aarch64-linux-gnu. Libraries: the
# Debian arm64 packages installed side by side through multiarch (scripts/deps.sh), found by
# pkg-config in /usr/lib/aarch64-linux-gnu/pkgconfig. Tests run through qemu-user
# (qemu-user-static): `-cpu max` has dotprod / i8mm, so the table with SDOT is what runs;
# EVLM_QEMU_CPU picks another model (e.g. cortex-a53, plain ARMv8.0 NEON without dotprod).
# Not here: native ARM builds (the plain presets work there) or other ARM ABIs.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# libraries and headers of the target only; programs (pkg-config, bash, python3) of the host
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)

# pkg-config: the arm64 .pc files only (headers are shared between multiarch packages)
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

set(EVLM_QEMU_CPU "max" CACHE STRING "qemu -cpu model the tests run under (max, cortex-a53, ...)")
# The guest's dynamic loader and libc are the multiarch libc6:arm64 in /lib (pulled in by the
# :arm64 -dev packages). Not `-L /usr/aarch64-linux-gnu`: that mixes the cross toolchain's libc
# with the multiarch libraries, and pthread_create hangs under qemu 7.2.
set(CMAKE_CROSSCOMPILING_EMULATOR "qemu-aarch64-static;-cpu;${EVLM_QEMU_CPU}")
# test_kernels_baseline (CMakeLists.txt): the kernel tests again on an ARMv8.0 CPU (no dotprod),
# which covers the plain NEON int8 path
set(EVLM_EMULATOR_BASELINE "qemu-aarch64-static;-cpu;cortex-a53")
