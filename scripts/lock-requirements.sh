#!/bin/sh
# Regenerate the image's hash locks (requirements/server.lock, requirements/build.lock) after a change to
# constraints.txt or to pyproject.toml's `server` extra. pip-tools runs from a throwaway venv: it is not a
# dependency of the project. tests/test_image.py checks the result against constraints.txt.
set -eu
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
"${PYTHON:-python3}" -m venv "$tools"
"$tools/bin/pip" install --quiet pip-tools
"$tools/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
    --no-emit-find-links --extra server -c constraints.txt --output-file requirements/server.lock pyproject.toml
"$tools/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
    --no-emit-find-links --output-file requirements/build.lock requirements/build.in
