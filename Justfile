# sketchkit tasks. Bootstrap on a fresh machine (see README):
#   python3 -m venv .venv && .venv/bin/pip install -q rust-just && .venv/bin/just demo

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
py := venv / "bin/python"
sk := py + " -m sketchkit.cli"

# list recipes
default:
    @just --list

# create .venv and install sketchkit with its test extra (idempotent, quick when done)
setup:
    test -x {{py}} || python3 -m venv {{venv}}
    {{py}} -c "import ctypes.util, sys; sys.exit(0 if ctypes.util.find_library('cairo') else 1)" || { echo "cairo library missing: install it (Debian/Ubuntu: apt-get install libcairo2; macOS: brew install cairo)"; exit 1; }
    {{py}} -m pip install -q --disable-pip-version-check -e ".[test]"

# segment the bundled example sketches; overlays land in out/demo/
demo: setup
    #!/usr/bin/env bash
    set -euo pipefail
    mkdir -p out/demo
    {{sk}} convert examples/house_tree_sun.svg out/demo/house_tree_sun.truth.png --overwrite
    if {{sk}} segment examples/*.svg --labels "house,tree,sun,grass,boat,sea,bird,cloud,car,road" --out out/demo --format svg,png,json --overwrite; then
        echo "Done: labelled SVG, PNG overlays and JSON in out/demo/"
    else
        echo
        echo "The real ViT-B/16 weights are not available on this machine (see the error above)."
        echo "Showing the same pipeline on the tiny RANDOM-WEIGHT test model instead: its labels are meaningless."
        {{sk}} segment examples/*.svg --labels "house,tree,sun,grass,boat,sea,bird,cloud,car,road" --backbone tiny-random --out out/demo --format svg,png,json --overwrite
        echo "Done (tiny random model): out/demo/; out/demo/house_tree_sun.truth.png shows the ground-truth labels."
    fi

# run the test suite (pytest; exit code 5 = no tests collected counts as failure)
test *ARGS: setup
    {{py}} -m pytest -q {{ARGS}}

# speed report on this machine (kernel vs eager vs SDPA, encoder throughput)
bench *ARGS: setup
    {{sk}} bench {{ARGS}}

# find repeated code
dupes:
    duplicates . || true
