"""Second-order MAML under ``accelerate launch --cpu --num_processes 2`` equals one process with the same meta-batch.

The recipe ``recipes/meta_unseen_classes.py`` runs on the tiny BERT through the whole model
(``top_layers 0``, so fast weights go through ``functional_call`` of the DDP-wrapped model). Two
processes with one episode each per step against one process with ``gradient_accumulation_steps 2``:
with ``train_sampling_strategy sequential`` both see episodes (2k, 2k+1) at step k, DDP averages the
two ranks' meta-gradients and the single process averages its two accumulated ones, so the
meta-learned weights and the test accuracies must agree. The comparison setup (launcher, sequential
data, no dropout) follows tests/test_multiprocess.py, whose helpers are reused.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_transfer import testing
from test_multiprocess import run_recipe_on_one_and_two_processes  # tests/ is on sys.path (rootdir conftest)

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "meta_unseen_classes.py"


def _six_class_data(folder: Path) -> Path:
    """Six toy classes (three class words each, from the tiny tokenizer's vocabulary), texts of 3-6 words: episodes are padded."""
    import random

    words = [w for ws in testing.CLASS_WORDS.values() for w in ws]
    rng = random.Random(0)
    for split, n in (("train", 8), ("test", 8)):
        rows = []
        for label in range(6):
            for _ in range(n):
                chosen = rng.sample(words[3 * label : 3 * label + 3], 2) + rng.sample(testing.FILLER_WORDS, rng.randint(1, 4))
                rng.shuffle(chosen)
                rows.append({"text": " ".join(chosen), "label": label, "label_text": f"c{label}"})
        testing.write_jsonl(folder / f"{split}.jsonl", rows)
    return folder


@pytest.mark.slow
def test_two_process_maml_matches_one_process(tmp_path, tiny_text_backbone):
    data = _six_class_data(tmp_path / "data")
    common = [
        "--model", str(tiny_text_backbone), "--dataset", str(data), "--meta_train_classes", "0-2", "--meta_test_classes", "3-5",
        "--train_per_class", "0", "--methods", "maml", "--test_shots", "1", "--test_episodes", "4", "--top_layers", "0",
        "--n_way", "3", "--k_shot", "1", "--n_query", "2", "--inner_steps", "2", "--inner_lr", "0.3", "--max_steps", "3",
        "--learning_rate", "1e-2", "--train_sampling_strategy", "sequential", "--logging_steps", "1", "--seed", "0",
        "--use_cpu", "true", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true",
    ]
    one_dir, two_dir, outputs = run_recipe_on_one_and_two_processes(RECIPE, common, tmp_path)
    assert "starting 2 CPU processes" in outputs[0][1]
    assert "skip_padding changes" not in outputs[0][1] + outputs[1][1]  # padded episodes ran padding-free under DDP too
    assert json.loads((two_dir / "results.json").read_text())[0]["processes"] == 2
    assert json.loads((one_dir / "results.json").read_text())[0]["processes"] == 1
    two_logs = [row for row in map(json.loads, (two_dir / "maml" / "trainer_log.jsonl").read_text().splitlines()) if "loss" in row]
    assert [row["step"] for row in two_logs] == [1, 2, 3]  # three logged optimizer steps, once (rank 0)
    assert "find_unused_parameters" not in outputs[0][1]

    weights_one, weights_two = load_file(one_dir / "maml" / "model.safetensors"), load_file(two_dir / "maml" / "model.safetensors")
    before = load_file(tiny_text_backbone / "model.safetensors")
    assert max((weights_two[f"backbone.{k}"] - v).abs().max().item() for k, v in before.items() if f"backbone.{k}" in weights_two) > 1e-3
    assert weights_one.keys() == weights_two.keys()
    assert max((weights_one[k] - weights_two[k]).abs().max().item() for k in weights_one) < 1e-5
    assert all(torch.isfinite(t).all() for t in weights_two.values())

    result_one = json.loads((one_dir / "results.json").read_text())[0]["1shot"]
    result_two = json.loads((two_dir / "results.json").read_text())[0]["1shot"]
    assert result_two["episodes"] == result_one["episodes"] == 4  # both ranks' test episodes were gathered
    assert result_two["accuracy"] == pytest.approx(result_one["accuracy"], abs=1e-9)
