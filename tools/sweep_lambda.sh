#!/bin/sh
# The lambda sweep behind the demo models' choice of lambda (Makefile DEMO_*): trains the demo
# MLP for 5 epochs with each regularizer at a few lambdas and prints clean test accuracy and
# the regularizer's mean value on the test set. Pick, per regularizer, the largest lambda whose
# accuracy stays within about 3 points of the plain model. Takes ~15 minutes on 2 cores.
# Usage: tools/sweep_lambda.sh [OUTDIR]   (run `make` first)
set -eu
out=${1:-build/sweep}
mkdir -p "$out"
train=build/relureg-train
run() { # name regularizer lambda [options...]
    name=$1; reg=$2; lam=$3; shift 3
    [ -f "$out/$name.safetensors" ] || "$train" --arch mlp --epochs 5 --seed 1 --quiet \
        --regularizer "$reg" --lambda "$lam" --out "$out/$name.safetensors" "$@"
    "$train" --evaluate "$out/$name.safetensors" | /usr/bin/python3 -c "
import json, sys
d = json.load(sys.stdin); r = d['regularizers']
print(f\"{'$reg':16} {'$lam':>8} {100 * d['test_accuracy']:6.2f}%  IG {r['input_gradient']:.3g}  \"
      f\"J {r['jacobian']:.3g}  CL {r['cross_lipschitz']:.3g}  CURE {r['curvature_fd']:.3g}\")"
}
run plain none 0
for l in 0.01 0.1 1; do run ig_$l input_gradient $l; done
for l in 0.001 0.01 0.1; do run jac_$l jacobian $l; done
for l in 0.01 0.1 1; do run cl_$l cross_lipschitz $l; done
for l in 0.01 0.1 1; do run cure_$l curvature $l; done
