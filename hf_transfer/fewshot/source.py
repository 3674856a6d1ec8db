"""Source-task transfer: the body adapted on a labelled source dataset, then K-shot on the target with that body.

``hf-transfer fewshot --source NAME`` (and ``source:`` in ``fewshot_text.yaml`` for ``hf-transfer train --fewshot_method``)
first runs stage 1 of ``prototype_tuning`` (``PrototypeTuning.train_body``: the body fine-tuned by cross-entropy against
frozen class prototypes) on the source's whole train split, then every few-shot method starts from the adapted body
instead of the pretrained one. The source's classes need not be the target's: the body learns what separates intents
(or topics) in general, and the target's classes are new prototypes in that space.

The adapted body is cached under ``$HF_TRANSFER_ADAPTED_CACHE`` (default ``$HF_HOME/hf_transfer/adapted``) in a folder
named by its fingerprint: the source's train texts, labels and class names, the adaptation settings, and the base
model's name and weights' sha256, max_length and pooling. A sweep over targets, K, seeds and methods adapts once. The
folder is an ordinary model folder (``save_pretrained`` body + tokenizer + ``adaptation.json``), built beside its place
and renamed, so ``SentenceEncoder(model=folder)`` (or ``--model folder``) loads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm
from transformers import TrainerCallback

from hf_transfer import backbones, outputs
from hf_transfer.data.class_subset import load_named
from hf_transfer.data.text_splits import TextSplits
from hf_transfer.errors import UserInputError
from hf_transfer.fewshot.encoder import SentenceEncoder

CACHE_ENV = "HF_TRANSFER_ADAPTED_CACHE"
ADAPTATION_FILE = "adaptation.json"
FINGERPRINT_VERSION = 1  # bump when what a cached body means changes


OBJECTIVES = {"prototype": "stage 1 of `prototype_tuning`", "contrastive": "class-balanced contrastive (multiple-negatives ranking)"}


@dataclass(frozen=True)
class SourceAdaptation:
    """Stage 1 of ``prototype_tuning`` for a source of thousands of examples (not the K-shot defaults).

    One epoch: the K-shot settings (8 epochs, at least 50 steps) exist because K x classes examples give few steps;
    a source of n examples gives n / 32 steps per pass, hundreds for an intent set, and each example is seen once, so
    the cost is one training pass, linear in n. More passes would fit the *source's* classes ever more closely, and
    what the target needs is the general geometry, not those classes (the target's classes are unseen). The
    learning rate is the usual BERT fine-tuning rate and ``prototype_tuning``'s own (5e-5, linear decay, 10% warm-up);
    the cosine scale (20) and batch size (32) are the method's. The seed is fixed, not the target run's, so one
    adapted body serves every seed of a sweep.
    """

    objective: str = "prototype"
    epochs: float = 1.0
    learning_rate: float = 5e-5
    batch_size: int = 32
    scale: float = 20.0
    temperature: float = 0.1
    seed: int = 0

    def train_body(self, encoder: SentenceEncoder, splits: TextSplits, callbacks: list) -> "torch.nn.Module":
        """The body adapted on the source's train split by ``objective``: ``prototype`` (cross-entropy toward frozen
        class prototypes, stage 1 of ``prototype_tuning``) or ``contrastive`` (in-batch multiple-negatives ranking on
        class-balanced batches, stage 1 of ``recommended`` at three or more classes: supervised contrastive pre-training
        on the source's labels, as CPFT does on intent data)."""
        if self.objective == "contrastive":
            from hf_transfer.fewshot.methods.contrastive import Contrastive

            method = Contrastive(loss="multiple_negatives", temperature=self.temperature, epochs=self.epochs,
                                 learning_rate=self.learning_rate, batch_size=self.batch_size, class_balanced=True)
            return method.train_body(encoder, splits.train_texts, splits.train_labels, self.seed, callbacks=callbacks)
        if self.objective != "prototype":
            raise ValueError(f"SourceAdaptation.objective: '{self.objective}' is not one of prototype, contrastive")
        from hf_transfer.fewshot.methods.prototype_tuning import PrototypeTuning

        method = PrototypeTuning(epochs=self.epochs, learning_rate=self.learning_rate, batch_size=self.batch_size, scale=self.scale, min_steps=0)
        return method.train_body(encoder, splits.train_texts, splits.train_labels, splits.num_classes, self.seed, callbacks=callbacks)


def load_source_task(name: str, data_dir: str | Path | None, sources: dict | None = None) -> TextSplits:
    """The source ``name`` (``NAME`` or ``NAME:SPEC``: a folder under ``data_dir`` or a ``sources`` entry); its train split adapts."""
    try:
        return load_named(name, data_dir, sources, option="--source")
    except UserInputError as error:  # a bad file of the source: say that it is the source's
        if error.problem.startswith("--source"):
            raise
        raise UserInputError(f"--source '{name}': {error.problem}", error.fix) from None


def cache_home() -> Path:
    """Where adapted bodies are kept: ``$HF_TRANSFER_ADAPTED_CACHE``, else ``$HF_HOME/hf_transfer/adapted``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HOME") or constants.HF_HOME).expanduser() / "hf_transfer" / "adapted"


def source_fingerprint(encoder: SentenceEncoder, splits: TextSplits, settings: SourceAdaptation) -> str:
    """What the adapted body depends on, hashed: the source's train data, the settings, the base model and its encoding."""
    return fingerprint_of(encoder.name, encoder.max_length, encoder.pooling, splits, settings)


def fingerprint_of(model: str, max_length: int, pooling: str, splits: TextSplits, settings: SourceAdaptation = SourceAdaptation()) -> str:
    """``source_fingerprint`` from the base model's name and encoding settings (no model loaded)."""
    payload = {"version": FINGERPRINT_VERSION, "texts": splits.train_texts, "labels": splits.train_labels,
               "class_names": splits.class_names, "settings": asdict(settings), "model": backbones.public_name(model),
               "model_sha256": backbones.weights_sha256(model), "max_length": max_length, "pooling": pooling}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:20]


def cached_adapted_body(model: str, max_length: int, pooling: str, splits: TextSplits) -> Path | None:
    """The folder of the body adapted on ``splits`` from ``model`` (default settings) when it is cached already, else None."""
    folder = cache_home() / fingerprint_of(model, max_length, pooling, splits)
    return folder if (folder / ADAPTATION_FILE).is_file() else None


class _Progress(TrainerCallback):
    """One tqdm bar over the adaptation's optimizer steps (the few-shot trainings run without Trainer output)."""

    def __init__(self, description: str):
        self.description, self.bar = description, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = tqdm(total=state.max_steps, desc=self.description, unit="step")

    def on_step_end(self, args, state, control, **kwargs):
        self.bar.update(1)

    def on_train_end(self, args, state, control, **kwargs):
        self.bar.close()


def adapted_body(encoder: SentenceEncoder, splits: TextSplits, name: str, settings: SourceAdaptation = SourceAdaptation()) -> Path:
    """The folder of ``encoder``'s body adapted on the train split of ``splits`` (the source ``name``): the cached one
    when its fingerprint is there, else trained now (progress bar) and cached; a line says which."""
    folder = cache_home() / source_fingerprint(encoder, splits, settings)
    if (folder / ADAPTATION_FILE).is_file():
        tqdm.write(f"source: reusing the body adapted on {name} ({folder})", file=sys.stderr)
        return folder
    tqdm.write(f"source: adapting the body on {name} ({len(splits.train_texts)} examples, {splits.num_classes} classes); "
               f"cached in {folder}", file=sys.stderr)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # the bar only: no Trainer log dict, no
        warnings.filterwarnings("ignore", message=".*pin_memory.*")  # pin_memory notice on a machine without accelerator
        body = settings.train_body(encoder, splits, callbacks=[_Progress(f"adapting on {name}")])
    record = {"source": name, "num_examples": len(splits.train_texts), "num_classes": splits.num_classes,
              "class_names": splits.class_names, "base_model": backbones.public_name(encoder.name),
              "base_model_sha256": backbones.weights_sha256(encoder.name), "method": OBJECTIVES[settings.objective],
              "settings": asdict(settings), "max_length": encoder.max_length, "pooling": encoder.pooling}

    def build(staging: Path) -> None:
        body.save_pretrained(staging)
        encoder.tokenizer.save_pretrained(staging)
        outputs.write_json(staging / ADAPTATION_FILE, record)

    outputs.build_then_publish(folder, build)
    return folder


def source_encoder(encoder: SentenceEncoder, splits: TextSplits, name: str) -> SentenceEncoder:
    """A ``SentenceEncoder`` of the body adapted on the source (same max_length, pooling and batch size as ``encoder``)."""
    folder = adapted_body(encoder, splits, name)
    return SentenceEncoder(str(folder), max_length=encoder.max_length, batch_size=encoder.batch_size, pooling=encoder.pooling)


def adaptation_of(model: str | None) -> dict | None:
    """What ``adaptation.json`` of the model folder ``model`` says (None: not an adapted body)."""
    path = Path(str(model or "")) / ADAPTATION_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


def adaptation_text(record: dict) -> str:
    """One line for a card: which source the body was adapted on, how, and from which base model."""
    settings = record.get("settings", {})
    return (f"adapted on the source `{record['source']}` ({record['num_examples']} examples, {record['num_classes']} classes) by "
            f"{record.get('method', OBJECTIVES['prototype'])} ({settings.get('epochs')} epoch(s), learning rate {settings.get('learning_rate')}, "
            f"batch {settings.get('batch_size')}) from `{record['base_model']}`, before the few-shot method ran")
