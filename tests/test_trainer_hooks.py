"""The piece every trainer shares (``TrainerHooks``): one level below ``transformers.Trainer``, the NaN/inf-loss
stop reached through each trainer's own loss path (no callback, no patching), and one unwrap for every wrapper."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

from hf_transfer import testing
from hf_transfer.data.episodes import EpisodeCollator, EpisodeDataset, tokenized_examples
from hf_transfer.errors import UserInputError
from hf_transfer.models import ContrastiveEncoder, MultiTaskModel, TransferModel, unwrap
from hf_transfer.trainers import (
    ContrastiveTrainer,
    DANNTrainer,
    DistillationTrainer,
    MetaArguments,
    MetaTrainer,
    MultiTaskTrainer,
    TrainerHooks,
    TransferTrainer,
)

TRAINERS = [TransferTrainer, ContrastiveTrainer, MetaTrainer, DistillationTrainer, DANNTrainer, MultiTaskTrainer]
LABELS = {0: "sports", 1: "weather", 2: "food"}


@pytest.mark.parametrize("trainer_class", TRAINERS, ids=lambda cls: cls.__name__)
def test_every_trainer_is_one_level_below_the_hugging_face_trainer(trainer_class):
    assert trainer_class.__bases__ == (Trainer,)


def _poisoned(model):
    """``model`` with NaN embedding-LayerNorm weights: every feature, logit and loss it gives is NaN."""
    with torch.no_grad():
        model.backbone.embeddings.LayerNorm.weight.fill_(float("nan"))
    return model


def _tokenized(with_task_ids: bool = False) -> Dataset:
    tokenizer, rows = testing.tiny_tokenizer(), testing.toy_sentences(4)
    columns = dict(tokenizer([r["text"] for r in rows], truncation=True, max_length=32))
    columns["labels"] = [r["label"] for r in rows]
    if with_task_ids:
        columns["task_ids"] = [0] * len(rows)
    return Dataset.from_dict(columns)


def _trainer(trainer_class, backbone, tmp_path) -> Trainer:
    torch.manual_seed(0)
    batch = 1 if trainer_class is MetaTrainer else 4
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=batch, per_device_eval_batch_size=batch,
        learning_rate=1e-3, report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True,
    )
    collator = DataCollatorWithPadding(testing.tiny_tokenizer())
    common = {"args": args, "data_collator": collator}
    if trainer_class is MultiTaskTrainer:
        model = MultiTaskModel.from_backbone(str(backbone), {"topic": list(LABELS.values())})
        data = _tokenized(with_task_ids=True)
        return MultiTaskTrainer(model=_poisoned(model), train_dataset=data, task_sizes=[len(data)], **common)
    model = _poisoned(TransferModel.from_backbone(str(backbone), LABELS))
    if trainer_class is MetaTrainer:
        rows = testing.toy_sentences(6)
        examples = tokenized_examples([r["text"] for r in rows], testing.tiny_tokenizer(), 32)
        episodes = EpisodeDataset(examples, [r["label"] for r in rows], 3, 2, 2, 2, seed=0)
        return MetaTrainer(model=model, args=args, meta_args=MetaArguments(meta_method="protonet", n_way=3, k_shot=2, n_query=2),
                           train_dataset=episodes, data_collator=EpisodeCollator(testing.tiny_tokenizer()))
    if trainer_class is DistillationTrainer:
        teacher = TransferModel.from_backbone(str(backbone), LABELS)
        return DistillationTrainer(model=model, teacher=teacher, train_dataset=_tokenized(), **common)
    if trainer_class is ContrastiveTrainer:  # a TransferModel trains contrastively inside an encoder (its own pooling)
        return ContrastiveTrainer(model=ContrastiveEncoder(model), train_dataset=_tokenized(), **common)
    if trainer_class is DANNTrainer:
        return DANNTrainer(model=model, target_dataset=_tokenized().remove_columns("labels"), train_dataset=_tokenized(), **common)
    return trainer_class(model=model, train_dataset=_tokenized(), **common)


@pytest.mark.parametrize("trainer_class", TRAINERS, ids=lambda cls: cls.__name__)
def test_every_trainer_stops_on_a_nan_training_loss_by_itself(trainer_class, tiny_text_backbone, tmp_path):
    trainer = _trainer(trainer_class, tiny_text_backbone, tmp_path)
    assert isinstance(trainer.hooks, TrainerHooks)
    assert "compute_loss" not in vars(trainer)  # the check is the trainer's own loss path, not a patched attribute
    with pytest.raises(UserInputError, match=r"training loss became NaN at step 1; .*lower learning_rate \(now 0.001\)"):
        trainer.train()


def test_the_stop_names_the_step_and_ignores_evaluation(tiny_text_backbone, tmp_path):
    trainer = _trainer(TransferTrainer, tiny_text_backbone, tmp_path)
    trainer.state.global_step = 6
    nan = torch.tensor(float("nan"))
    model = unwrap(trainer.model).eval()
    assert torch.isnan(trainer.hooks.training_loss(model, nan))  # evaluation losses are reported, not judged
    model.train()
    with pytest.raises(UserInputError, match="became inf at step 7"):
        trainer.hooks.training_loss(model, torch.tensor(float("inf")))
    assert trainer.hooks.training_loss(model, torch.tensor(1.5)) == 1.5


def test_unwrap_removes_peft_and_ddp_style_wrappers(tiny_text_backbone):
    from peft import LoraConfig, get_peft_model

    from hf_transfer.strategies.lora import peft_without_deprecation_notice

    model = TransferModel.from_backbone(str(tiny_text_backbone), LABELS)
    assert unwrap(model) is model
    with peft_without_deprecation_notice():  # peft's own read of a deprecated transformers alias
        peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["query"], modules_to_save=["classifier"]))
    assert unwrap(peft_model) is model
    assert unwrap(torch.nn.DataParallel(peft_model)) is model
