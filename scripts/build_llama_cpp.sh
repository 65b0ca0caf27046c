#!/usr/bin/env bash
# Builds llama.cpp's command-line tools (llama-perplexity, llama-simple, llama-completion,
# llama-tokenize) into .llama.cpp/bin from the llama.cpp vendored in the pinned llama-cpp-python sdist
# (requirements-llamacpp.txt). `make llama-cpp` runs it once; coursekit.llamacpp finds the tools there
# (or in $COURSEKIT_LLAMA_CPP). The build folder is kept, so a rerun compiles only what changed.
#
# Never built native (-DGGML_NATIVE=OFF): GCC 12 drops the stores that fill ggml's AMX tile
# configuration, and a native build segfaults at the first inference on a CPU with AMX (upstream
# llama.cpp issue #20824). The portable build still picks AVX2/AVX-512 kernels at run time.
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
DEST=${LLAMA_CPP_DIR:-.llama.cpp}
JOBS=${LLAMA_CPP_JOBS:-$(nproc)}
TARGETS="llama-perplexity llama-simple llama-completion llama-tokenize"
start=$(date +%s)

pin=$(sed -n 's/^llama-cpp-python==\([^ ]*\) .*/\1/p' requirements-llamacpp.txt)
sha=$(sed -n 's/^llama-cpp-python==.*--hash=sha256:\([0-9a-f]*\).*/\1/p' requirements-llamacpp.txt)
top=llama_cpp_python-$pin
# pip checks the hash (and prepares the package's metadata: a minute); a kept download is checked here
if ! echo "$sha  $DEST/download/$top.tar.gz" | sha256sum --check --status 2>/dev/null; then
    mkdir -p "$DEST/download"
    echo "downloading the llama-cpp-python $pin sdist (77 MB) from PyPI ..."
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
        --require-hashes -r requirements-llamacpp.txt -d "$DEST/download"
fi

# the sources keep the archive's dates, so a kept build folder stays up to date with them
if [ "$(cat "$DEST/src.version" 2>/dev/null)" != "$top" ]; then
    rm -rf "$DEST/src" "$DEST/build"
    mkdir -p "$DEST/src"
    tar -xzf "$DEST/download/$top.tar.gz" -C "$DEST/src" --strip-components=3 "$top/vendor/llama.cpp"
    echo "$top" >"$DEST/src.version"
fi

# One patch: llama-perplexity returns without flushing its log, which a worker thread writes
# (common/log.cpp); on a busy machine its last lines, the perplexity among them, never reach stdout.
ppl="$DEST/src/tools/perplexity/perplexity.cpp"
if ! grep -q "common_log_flush(common_log_main());" "$ppl"; then
    sed -i 's|^    common_memory_breakdown_print(ctx);$|&\n    common_log_flush(common_log_main());|' "$ppl"
    grep -q "common_log_flush(common_log_main());" "$ppl" || { echo "patching $ppl failed" >&2; exit 1; }
fi

cmake -S "$DEST/src" -B "$DEST/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_TOOLS=ON >"$DEST/cmake.log" 2>&1
echo "building $TARGETS with $JOBS jobs (log: $DEST/build.log) ..."
# shellcheck disable=SC2086
cmake --build "$DEST/build" --config Release -j "$JOBS" --target $TARGETS >"$DEST/build.log"

mkdir -p "$DEST/bin"
for t in $TARGETS; do cp "$DEST/build/bin/$t" "$DEST/bin/"; done
secs=$(( $(date +%s) - start ))
echo "llama.cpp built in ${secs} s ($(( secs / 60 )) min $(( secs % 60 )) s): $DEST/bin/{${TARGETS// /,}}"
