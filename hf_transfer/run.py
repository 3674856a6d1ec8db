"""One run lifecycle for every recipe: staging folder, resume, atomic publish, push.

    run = Run.start(training, fingerprint(config.source))   # before building the Trainer
    trainer = SomeTrainer(..., args=training)                # training.output_dir is now the staging folder
    result = run.train(trainer)                              # resumes a killed run
    run.finish(trainer, lambda staging: save_everything(staging))

``Run.start`` takes ``--push_to_hub`` away from the Trainer (which would push every checkpoint),
points ``training.output_dir`` at ``OUTPUT_DIR.incomplete`` and finds the checkpoint to continue
from when the same command was killed before. ``Run.finish`` (every process calls it) has the main
process drop the checkpoints, save into the staging folder, rename it to ``OUTPUT_DIR``, and push
the published folder to ``hub_model_id`` when asked.

What a run saves beside its model goes through the same helpers in every recipe: ``save_record``
(its settings, ``metrics.json`` and the card), ``write_config`` (settings redacted by
``hf_transfer.redact``), ``hf_transfer.cards.write`` (the card); ``save_classifier`` saves a whole
classifier run with them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hf_transfer import cards, hub, outputs
from hf_transfer.config import resolved_values
from hf_transfer.models.common import unwrap
from hf_transfer.outputs import ADAPTER_CONFIG_FILE, ADAPTER_FOLDER, CONFIG_FILE, METRICS_FILE
from hf_transfer.redact import command_line, portable_path, publishable_config

# TrainingArguments keys that change how a run is resumed, logged or published, never what it computes.
NOT_FINGERPRINTED = frozenset({
    "resume_from_checkpoint", "overwrite_output_dir", "push_to_hub", "hub_model_id", "hub_token", "hub_private_repo",
    "hub_revision", "disable_tqdm", "report_to", "logging_dir",
})


def fingerprint(source: dict[str, Any]) -> dict[str, Any]:
    """What must match for a re-run to continue an unfinished run: every key the user set but the resume/publish ones."""
    return {key: value for key, value in sorted(source.items()) if key.replace("-", "_") not in NOT_FINGERPRINTED}


@dataclass
class Run:
    """A started run: where it writes, what it resumes from, whether it pushes at the end."""

    training: Any  # TrainingArguments; output_dir points at ``staging`` until ``finish``
    final_dir: str
    staging: Path
    resume: str | None  # the checkpoint for ``trainer.train(resume_from_checkpoint=...)``
    push: bool
    continuing: bool  # the staging folder of an unfinished run of the same command was kept

    @classmethod
    def start(cls, training, run_fingerprint: dict[str, Any], keep_same_run: bool = False) -> Run:
        """Take the push request, prepare ``OUTPUT_DIR.incomplete`` and find what to resume.

        ``keep_same_run``: keep the staging folder of an unfinished run of the same command even when
        it holds no checkpoint at its top (recipes that run several Trainers in sub-folders resume
        each one themselves, see ``last_checkpoint``).
        """
        final_dir = training.output_dir
        push = hub.take_push_request(training)
        resume = outputs.begin_run(training, run_fingerprint, keep_same_run=keep_same_run)
        staging = Path(training.output_dir)
        continuing = resume is not None or (keep_same_run and outputs.same_run(staging, run_fingerprint))
        return cls(training, final_dir, staging, resume, push, continuing)

    def train(self, trainer, resume: str | None | bool = True):
        """``trainer.train``; ``resume=True`` continues from ``self.resume``.

        hf_transfer's trainers stop on a NaN/inf training loss themselves (``hf_transfer.trainers.TrainerHooks``),
        raising before ``finish`` could publish the folder.
        """
        return trainer.train(resume_from_checkpoint=self.resume if resume is True else (resume or None))

    def last_checkpoint(self, folder: str | os.PathLike) -> str | None:
        """The last complete checkpoint under ``folder`` when this run continues an unfinished one, else None."""
        if not self.continuing:
            return None
        found = outputs.complete_checkpoints(folder) if Path(folder).is_dir() else []
        return str(found[-1]) if found else None

    def finish(self, trainer, save: Callable[[Path], None]) -> str:
        """Main process: drop checkpoints, ``save(staging)``, publish to ``final_dir``, push if asked. Returns ``final_dir``.

        Every process calls it (it ends with a barrier). ``trainer`` may be None for recipes that ran
        several Trainers (or none, when a resumed run had only publishing left).
        """
        main = trainer.is_world_process_zero() if trainer is not None else self.training.process_index == 0
        if main:
            outputs.finish_run(self.staging)  # checkpoints were only needed to resume an unfinished run
            save(self.staging)
            outputs.publish(self.staging, self.final_dir)
            if self.push:
                hub.push_after_run(self.training, self.final_dir)
        if trainer is not None:
            trainer.accelerator.wait_for_everyone()
        else:
            from accelerate import PartialState

            PartialState().wait_for_everyone()
        self.training.output_dir = self.final_dir
        return self.final_dir


CONFIG_HEADER = "# Saved by hf_transfer. Local absolute paths are recorded relative to the working folder or by their last part.\n"


def write_config(path: str | os.PathLike, values: dict[str, Any], output_dir: str | os.PathLike | None = None) -> None:
    """A run's settings as YAML, redacted for publishing (``redact.publishable_config``); ``output_dir``: the final folder."""
    outputs.write_text(path, CONFIG_HEADER + yaml.safe_dump(publishable_config(values, output_dir), sort_keys=True))


def save_record(staging: Path, final_dir: str, values: dict[str, Any], metrics: dict, card: cards.Card,
                config_file: str = CONFIG_FILE) -> None:
    """What every finished run records beside its model: its settings (``config_file``), ``metrics.json`` and the card."""
    write_config(staging / config_file, values, final_dir)
    outputs.write_json(staging / METRICS_FILE, metrics)
    cards.write(staging, card)


def save_trained_model(trainer, strategy, staging: Path, final_dir: str):
    """A trained model into ``staging`` the strategy's way (LoRA: merged and/or ``adapter/``, the adapter pointing at
    ``final_dir``) with its processor; returns the base model's config (what the card reads)."""
    from hf_transfer.strategies.lora import point_adapter_at

    model = trainer.accelerator.unwrap_model(trainer.model)
    base_config = unwrap(model).config
    strategy.save(model, staging)
    trainer.processing_class.save_pretrained(staging)
    adapter_dir = staging / ADAPTER_FOLDER if (staging / ADAPTER_FOLDER / ADAPTER_CONFIG_FILE).is_file() else staging
    if (adapter_dir / ADAPTER_CONFIG_FILE).is_file():  # AutoPeftModel loads it from where the run put it
        trainer.processing_class.save_pretrained(adapter_dir)
        location = Path(portable_path(final_dir))
        point_adapter_at(adapter_dir, (location / adapter_dir.relative_to(staging)).as_posix())
    return base_config


def save_classifier(trainer, strategy, config, metrics: dict, staging: Path, final_dir: str, num_train: int,
                    objective: str = "supervised cross-entropy", task: str | None = None) -> None:
    """A finished classifier run into ``staging`` (main process only): model (or merged model + ``adapter/``),
    processor, resolved config (``recipe_config.yaml``, rerunnable), metrics and a card naming the ``objective`` (and the
    ``task``, when not single-label classification)."""
    base_config = save_trained_model(trainer, strategy, staging, final_dir)
    card = cards.classifier_card(
        model_name=Path(final_dir).name,
        **cards.backbone_facts(base_config),
        strategy=strategy.name,
        strategy_hyperparameters=strategy.hyperparameters(),
        objective=objective,
        dataset=cards.data_name(config.data),
        num_train_examples=num_train,
        training_summary=cards.training_summary(config.training),
        metrics=metrics,
        command=command_line(),
        adapter_folder=(staging / ADAPTER_FOLDER).is_dir(),
        task=task,
    )
    save_record(staging, final_dir, resolved_values(config), metrics, card)
