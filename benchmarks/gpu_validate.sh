#!/usr/bin/env bash
# One call on a lent GPU machine (device tool): build, test, sanitize, benchmark; results land in $OUT.
#   bash benchmarks/gpu_validate.sh [build] [test] [sanitize] [bench] [profile]   (default: the first four)
# BENCH_K selects benchmark cases (pytest -k), e.g. BENCH_K="residual or upsample": torch.compile(max-autotune) of
# the whole-model cases alone takes longer than one call; BENCH_TAG names the results file of such a partial run
# (benchmarks/results/<gpu>-<date>-<tag>.json). Stages stop at DEADLINE (570 s) so the call ends inside the tool's
# 10-minute limit with its logs; run stages in separate calls (see NOTES-gpu.md). The machine has torch+cu130,
# triton, nvcc, compute-sanitizer and every dependency preinstalled, and no network: install with
# --no-build-isolation --no-deps.
set -uo pipefail
OUT=${OUT:-/tmp/hgfast-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# The whole call must end before the device tool's 600 s limit, so that the logs in $OUT come back: each stage's
# timeout is its own limit or what is left before DEADLINE seconds, whichever is smaller.
DEADLINE=${DEADLINE:-570}
limit() { local left=$((DEADLINE - SECONDS)); echo $((left < $1 ? (left > 1 ? left : 1) : $1)); }
stages=${*:-build test sanitize bench}
stamp=$(date -u +%Y-%m-%d)
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-')
for stage in $stages; do
    echo "=== $stage"
    case $stage in
        build)
            # torch guesses CUDA_HOME from the nvcc on PATH, which is wrong for a wrapper script outside the toolkit
            if [ -z "${CUDA_HOME:-}" ] && [ -f /usr/local/cuda/include/cuda_runtime.h ]; then
                export CUDA_HOME=/usr/local/cuda
            fi
            timeout $(limit 300) python3 -m pip install -q --no-build-isolation --no-deps -e . 2>&1 | tail -5
            python3 -m hgfast.info | tee "$OUT/info.txt" ;;
        test)
            # First fitting GEMM config only (HGFAST_AUTOTUNE=0): autotuning every test shape would compile up to 5
            # binaries per kernel variant; test_every_gpu_config_matches_the_reference covers all the configs. Likewise
            # one inference-residual implementation unless a test pins another (test_residual_eval_on_the_gpu times
            # them all).
            HGFAST_AUTOTUNE=${HGFAST_AUTOTUNE:-0} HGFAST_EVAL_RESIDUAL=${HGFAST_EVAL_RESIDUAL:-single} \
                timeout $(limit 480) python3 -m pytest tests -q -p no:cacheprovider \
                --durations=15 2>&1 | tee "$OUT/tests.log" | tail -40 ;;
        sanitize)
            for tool in memcheck racecheck; do
                timeout $(limit 240) compute-sanitizer --tool $tool --error-exitcode 1 \
                    python3 -m pytest tests/test_ops_targets.py tests/test_ops_decode.py tests/test_ops_loss.py \
                    -q -m gpu -p no:cacheprovider > "$OUT/sanitizer-$tool.log" 2>&1
                echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|passed|failed' "$OUT/sanitizer-$tool.log" | tr '\n' ' ')"
            done
            # the Triton kernel with the most index arithmetic (halo tiles, per-program scratch): out-of-bounds only
            HGFAST_EVAL_RESIDUAL=single timeout $(limit 150) compute-sanitizer --tool memcheck --error-exitcode 1 \
                python3 -m pytest tests/test_kernels_residual_eval.py -q -p no:cacheprovider -k "float64 or padding" \
                > "$OUT/sanitizer-memcheck-residual-eval.log" 2>&1
            echo "memcheck residual_eval rc=$? $(grep -E 'ERROR SUMMARY|passed|failed' \
                "$OUT/sanitizer-memcheck-residual-eval.log" | tr '\n' ' ')" ;;
        bench)
            json="benchmarks/results/$gpu-$stamp${BENCH_TAG:+-$BENCH_TAG}.json"
            timeout $(limit 540) python3 -m pytest benchmarks -q --benchmark-only -p no:cacheprovider -k "${BENCH_K:-}" \
                --benchmark-json="$OUT/$(basename "$json")" 2>&1 | tail -5
            python3 benchmarks/report.py "$OUT/$(basename "$json")" --markdown "$OUT/report.md" \
                --png "$OUT/report.png" && tail -40 "$OUT/report.md" ;;
        profile)
            # Per-kernel time and GPU-busy share of the issue-7 cases (benchmarks/profile_kernels.py), fused first.
            while read -r args; do
                [ -n "$args" ] || continue
                echo "--- profile $args"
                timeout $(limit 240) python3 benchmarks/profile_kernels.py $args --out "$OUT/profile" 2>&1 \
                    | grep -E '^(#|wall|\| `)' | head -12
            done <<< "${PROFILE_CASES:-residual --train --contender fused
residual --train --contender eager
residual --train --backward --contender fused
residual --train --backward --contender eager
residual --contender fused
model --train --backward --contender fused-graph
model --train --backward --contender fused
model --train --backward --contender eager-graph
model --contender fused-graph}" ;;
        *) echo "unknown stage $stage (build, test, sanitize, bench, profile)"; exit 2 ;;
    esac
done
