#!/usr/bin/env bash
# Convert every checkpoint of DeepMind's kinetics-i3d release that this machine can reach into the weights
# cache ($I3D_HOME, else ~/.cache/i3d_lightning), and say what happened to each:
#
#     tools/convert.sh [--mirror DIR] [NAME ...]
#
# DIR is a copy of the release's data/ folder (default: a verified download from the release); NAME is
# rgb_imagenet, flow_imagenet, rgb_scratch, flow_scratch or rgb_scratch_kin600 (default: all five).
# Exit status 3 when one could not be had. The work is `i3d-convert --release`'s (the package's command);
# this script is where users of the reference port look for it. Needs the [tf] extra to convert.
set -euo pipefail
mirror=()
if [ "${1:-}" = "--mirror" ]; then
    mirror=(--mirror "$2")
    shift 2
fi
if command -v i3d-convert > /dev/null; then
    exec i3d-convert --release "$@" "${mirror[@]}"
fi
exec "${PYTHON:-python3}" -m i3d_lightning.commands.convert --release "$@" "${mirror[@]}"
