#!/usr/bin/env bash
# Build llama.cpp's C++ `llama-server` (not a project dependency: only benchmarks use it, see the README)
# from the llama.cpp sources vendored in llama-cpp-python's sdist, the version the project pins, offline from
# PyPI. ~8 min on 2 cores. Prints the binary's path.
#
#   bash scripts/build-llama-server.sh [WORKDIR]      # default WORKDIR: /tmp/llama-server-build
set -euo pipefail
version=0.3.36
work=${1:-/tmp/llama-server-build}
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}
mkdir -p "$work"
cd "$work"
[ -f "llama_cpp_python-$version.tar.gz" ] || \
  "$python" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d .
[ -d "llama_cpp_python-$version" ] || tar xzf "llama_cpp_python-$version.tar.gz"
cd "llama_cpp_python-$version/vendor/llama.cpp"
cmake -B build -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
  -DCMAKE_BUILD_TYPE=Release > "$work/cmake.log"
cmake --build build --target llama-server -j"$(nproc)" > "$work/build.log"
echo "$PWD/build/bin/llama-server"
