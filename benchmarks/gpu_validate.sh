#!/usr/bin/env bash
# One call on a lent GPU machine (device tool): build, check, time. Sized for the lease: one command of at most
# 10 minutes, 15 minutes of device time per task, at most 8 files back from $OUT.
#   HGFAST_COMMIT=<sha> bash benchmarks/gpu_validate.sh   # the issue-7 plan, most valuable first, ends by DEADLINE
#   bash benchmarks/gpu_validate.sh compile               # then, on the still-warm machine, what was left out
#   bash benchmarks/gpu_validate.sh build check           # chosen stages, in the order given
# Stages: build, check (test + sanitize at once), test, sanitize, ops, residual, model, compile, bench, profile.
#   ops       ceilings, upsample_add, targets, decode, loss, maxpool (not compiled) (seconds)
#   residual  Res(256,256) 64x64 b32 bf16: every contender; train BN fwd and fwd+bwd, then eval BN fwd
#   model     8-stack b32 bf16 training step + inference: eager, fused and both from CUDA graphs
#   compile   the same with torch.compile(max-autotune) (minutes of Inductor autotuning: not in the default plan;
#             report.py merges its rows into the model groups)
#   bench     BENCH_K (pytest -k) cases, results tagged BENCH_TAG; profile: per-kernel times (profile_kernels.py)
# Each stage has its own time limit (they add up to DEADLINE; the last takes what is left), trimmed to what is left
# before DEADLINE (500 s; call the tool with timeout_s 560; a shorter call, DEADLINE=<its timeout_s - 60>): a stage
# cut short gets SIGINT first, so pytest still prints its summary and pytest-benchmark still writes the cases it
# finished. $OUT gets summary.md (build, tests, sanitizers, the report with the issue-7
# targets), report.png, one JSON per benchmark stage and logs.tar.gz (everything else), refreshed after each
# stage so a call killed at its limit still brings them back. The machine has torch+cu130, triton, nvcc,
# compute-sanitizer, pytest-xdist and every dependency preinstalled, and no network: install with
# --no-build-isolation --no-deps.
set -uo pipefail
OUT=${OUT:-/tmp/hgfast-gpu}
LOGS=${LOGS:-/tmp/hgfast-gpu-logs}
mkdir -p "$OUT" "$LOGS"
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1  # no network there
DEADLINE=${DEADLINE:-500}
# limit WANT: WANT seconds, or what is left before DEADLINE if less; at least 1 (timeout 0 would mean no limit)
limit() {
    local left=$((DEADLINE - SECONDS)) want=$(($1 > 1 ? $1 : 1))
    echo $((left < want ? (left > 1 ? left : 1) : want))
}
# run LIMIT CMD...: SIGINT at the limit (pytest reports and saves what it has), SIGKILL 15 s later
run() { local t; t=$(limit "$1"); shift; timeout -s INT -k 15 "$t" "$@"; }
stages=${*:-build check ops residual model}
stamp=$(date -u +%Y-%m-%d)
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-')

bundle() {  # everything but the JSONs, summary and chart, as one file (the tool brings back at most 8)
    tar -czf "$OUT/logs.tar.gz.tmp" -C "$LOGS" . 2>/dev/null && mv "$OUT/logs.tar.gz.tmp" "$OUT/logs.tar.gz"
}

note() { echo "$*" | tee -a "$LOGS/summary-lines.txt"; }

run_tests() {
    # HGFAST_AUTOTUNE=0: the first fitting GEMM config per kernel variant (autotuning every test shape would compile
    # up to 5 binaries each; test_every_gpu_config_matches_the_reference runs all of them); likewise one
    # inference-residual implementation unless a test pins another (test_residual_eval_on_the_gpu times them all).
    # Triton compiles in the pytest process, one kernel at a time: spread the files over 8 workers where xdist is
    # installed (it is on the GPU image), so compilation runs on 8 of the 16 cores.
    local par=()
    python3 -c "import xdist" 2>/dev/null && par=(-n "${TEST_WORKERS:-8}" --dist loadfile)
    HGFAST_AUTOTUNE=${HGFAST_AUTOTUNE:-0} HGFAST_EVAL_RESIDUAL=${HGFAST_EVAL_RESIDUAL:-single} \
        run "${1:-300}" python3 -m pytest tests -q -p no:cacheprovider "${par[@]}" --durations=25 \
        > "$LOGS/tests.log" 2>&1
    note "tests rc=$? $(grep -E '^(FAILED|ERROR)|[0-9]+ (passed|failed)' "$LOGS/tests.log" | tail -30 | tr '\n' ' ')"
}

run_sanitize() {  # run_sanitize TOTAL: the three runs share TOTAL seconds (a third each, and what earlier ones left)
    local tool log end=$((SECONDS + ${1:-150})) share=3
    # Without PyTorch's caching allocator: an access past a tensor but inside a cached block is not reported.
    export PYTORCH_NO_CUDA_MEMORY_CACHING=1
    for tool in memcheck racecheck; do
        log="$LOGS/sanitizer-$tool.log"
        run $(((end - SECONDS) / share)) compute-sanitizer --tool $tool --error-exitcode 1 \
            python3 -m pytest tests/test_ops_targets.py tests/test_ops_decode.py tests/test_ops_loss.py -q -m gpu \
            -p no:cacheprovider > "$log" 2>&1
        note "sanitizer $tool rc=$? $(grep -E 'ERROR SUMMARY|passed|failed' "$log" | tr '\n' ' ')"
        share=2
    done
    # the Triton kernel with the most index arithmetic (halo tiles, per-program scratch): out-of-bounds only
    log="$LOGS/sanitizer-memcheck-residual-eval.log"
    HGFAST_EVAL_RESIDUAL=single run $((end - SECONDS)) compute-sanitizer --tool memcheck --error-exitcode 1 \
        python3 -m pytest tests/test_kernels_residual_eval.py -q -p no:cacheprovider -k "float64 or padding" \
        > "$log" 2>&1
    note "sanitizer memcheck residual_eval rc=$? $(grep -E 'ERROR SUMMARY|passed|failed' "$log" | tr '\n' ' ')"
    unset PYTORCH_NO_CUDA_MEMORY_CACHING
}

bench() {  # bench TAG LIMIT PYTEST-SELECTION...: one results file per stage
    local tag=$1 lim=$2; shift 2
    local json="$OUT/$gpu-$stamp-$tag.json"
    run "$lim" python3 -m pytest -q --benchmark-only -p no:cacheprovider --benchmark-json="$json" "$@" \
        > "$LOGS/bench-$tag.log" 2>&1
    note "bench $tag rc=$? $(grep -E '[0-9]+ (passed|failed|skipped)|^(FAILED|ERROR)' "$LOGS/bench-$tag.log" \
        | tail -5 | tr '\n' ' ')"
}

report() {  # summary.md: what ran, then the table and the issue-7 targets of every JSON so far
    local jsons=("$OUT"/*.json)
    {
        echo "# hgfast ${HGFAST_COMMIT:-(commit not given)} on $gpu, $stamp ($SECONDS s into the call)"; echo
        sed 's/^/    /' "$LOGS/info.txt" 2>/dev/null; echo
        sed 's/^/- /' "$LOGS/summary-lines.txt"; echo
    } > "$OUT/summary.md"
    rm -f "$LOGS/report.md"
    [ -e "${jsons[0]}" ] && python3 benchmarks/report.py "${jsons[@]}" --markdown "$LOGS/report.md" \
        --png "$OUT/report.png" > "$LOGS/report.log" 2>&1
    [ -f "$LOGS/report.md" ] && cat "$LOGS/report.md" >> "$OUT/summary.md" || echo "(no report: $LOGS/report.log)" \
        >> "$OUT/summary.md"
}

model_k="8-32 and bfloat16"
# the residual cases by node id, so they run in this order: the issue-7 targets (train BN) first, eager and fused
# of every case before any torch.compile one (max-autotune compiles take most of a stage's limit)
residual_ids=()
for case in fwd-train fwd+bwd-train fwd-eval; do
    contenders="eager fused"
    [ $case = fwd-eval ] && contenders="eager fused fused-single fused-single-64 fused-three"
    for c in $contenders; do residual_ids+=("benchmarks/test_bench_residual.py::test_residual[64-$case-$c]"); done
done
for case in fwd-train fwd+bwd-train fwd-eval; do
    residual_ids+=("benchmarks/test_bench_residual.py::test_residual[64-$case-compile]")
done
for stage in $stages; do
    echo "=== $stage ($SECONDS s)"
    case $stage in
        build)
            # torch guesses CUDA_HOME from the nvcc on PATH, which is wrong for a wrapper script outside the toolkit
            if [ -z "${CUDA_HOME:-}" ] && [ -f /usr/local/cuda/include/cuda_runtime.h ]; then
                export CUDA_HOME=/usr/local/cuda
            fi
            run 90 python3 -m pip install -q --no-build-isolation --no-deps -e . > "$LOGS/build.log" 2>&1
            note "build rc=$? $(tail -2 "$LOGS/build.log" | tr '\n' ' ')"
            HGFAST_NO_JIT=1 run 30 python3 -m hgfast.info > "$LOGS/info.txt" 2>&1 ;;
        check)  # correctness only, so the two share the GPU
            run_sanitize 160 &
            run_tests 170
            wait ;;
        test) run_tests 420 ;;
        sanitize) run_sanitize 200 ;;
        ops)  # GPU cases only; the copy ceiling, then upsample_add (the first target), then the rest
            bench ops 50 benchmarks/test_bench_ceiling.py benchmarks/test_bench_upsample.py \
                benchmarks/test_bench_targets.py benchmarks/test_bench_decode.py benchmarks/test_bench_loss.py \
                benchmarks/test_bench_maxpool.py -k "not cpu and not compile" ;;
        residual) bench residual 90 "${residual_ids[@]}" ;;
        model) bench model 500 benchmarks/test_bench_model.py -k "$model_k and not compile" ;;
        compile) bench compile 540 benchmarks/test_bench_model.py -k "$model_k and compile" ;;
        bench) bench "${BENCH_TAG:-bench}" 540 benchmarks -k "${BENCH_K:-}" ;;
        profile)
            # Per-kernel time and GPU-busy share of the issue-7 cases (benchmarks/profile_kernels.py), fused first.
            while read -r args; do
                [ -n "$args" ] || continue
                echo "--- profile $args" >> "$LOGS/profile.log"
                run 240 python3 benchmarks/profile_kernels.py $args --out "$LOGS/profile" >> "$LOGS/profile.log" 2>&1
            done <<< "${PROFILE_CASES:-residual --train --contender fused
residual --train --backward --contender fused
residual --contender fused
model --train --backward --contender fused-graph
model --contender fused-graph}"
            note "profile: $(grep -cE '^--- profile' "$LOGS/profile.log") cases, see logs.tar.gz profile/" ;;
        *) echo "unknown stage $stage (build check test sanitize ops residual model compile bench profile)"; exit 2 ;;
    esac
    report
    bundle
done
cat "$OUT/summary.md"
