"""What an hf_transfer Trainer shows and records while it trains (installed by ``TrainerHooks.attach``).

The console gets one bar over the optimizer steps (the latest loss beside it) and a short line per
evaluation, ``epoch 2/3 · loss 0.4100 · eval accuracy 0.9300``, never the Trainer's raw log dicts. Every
log dict still goes, unchanged, to ``OUTPUT/trainer_log.jsonl`` (main process), to the checkpoints'
``trainer_state.json`` and to ``report_to``. ``--disable_tqdm true`` turns the bar and lines off.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from tqdm.auto import tqdm
from transformers import TrainerCallback

LOG_FILE = "trainer_log.jsonl"
SHOWN = ("accuracy", "micro_f1", "macro_f1", "mcc", "pearson")  # the first of these an evaluation reports is shown beside its loss


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


class ConsoleProgress(TrainerCallback):
    """One training bar, one line per evaluation, every log dict appended to ``OUTPUT/trainer_log.jsonl``."""

    def __init__(self):
        self.bar = None
        self.loss = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and not args.disable_tqdm:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", unit="step", dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self._record(args, state, logs)
        if "loss" in logs and isinstance(logs["loss"], (int, float)):
            self.loss = float(logs["loss"])
            if self.bar is not None:
                self.bar.set_postfix_str(f"loss {self.loss:.4f}", refresh=False)
        evaluated = [key for key in logs if key.startswith("eval_") and key != "eval_loss" and key.removeprefix("eval_") in SHOWN]
        if self.bar is not None and ("eval_loss" in logs or evaluated):
            parts = [f"epoch {math.ceil(state.epoch or 0)}/{math.ceil(args.num_train_epochs)}" if args.max_steps <= 0
                     else f"step {state.global_step}/{state.max_steps}"]
            if self.loss is not None:
                parts.append(f"loss {self.loss:.4f}")
            if "eval_loss" in logs:
                parts.append(f"eval loss {_number(logs['eval_loss'])}")
            if evaluated:
                key = min(evaluated, key=lambda k: SHOWN.index(k.removeprefix("eval_")))
                parts.append(f"eval {key.removeprefix('eval_').replace('_', ' ')} {_number(logs[key])}")
            self.bar.write(" · ".join(parts), file=sys.stderr)  # beside the bar (stderr), which it clears and redraws

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    @staticmethod
    def _record(args, state, logs: dict) -> None:
        folder = Path(args.output_dir)
        folder.mkdir(parents=True, exist_ok=True)  # the Trainer makes it too, at its first save
        row = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float, str, bool))}}
        with open(folder / LOG_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
