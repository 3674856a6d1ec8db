"""MultiTaskModel: one shared ``AutoModel`` backbone, one linear classification head per task.

A batch carries ``task_ids`` (one task index per example, see ``config.task_names``); each example
goes through the shared backbone and its own task's head. Saved and loaded with
``save_pretrained`` / ``from_pretrained`` (or ``AutoModel``: ``import hf_transfer`` registers it).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import SequenceClassifierOutput

from hf_transfer import backbones
from hf_transfer.models.common import build_trunk, safe_loading, validate_config


class MultiTaskConfig(PreTrainedConfig):
    """Nested backbone config, pooling, and ``tasks``: ``[[task name, [label names in id order]], ...]``.

    A list, not a mapping, because the task order gives the ``task_ids`` and JSON configs are saved
    with sorted keys.
    """

    model_type = "hf_transfer_multitask"
    sub_configs_defaults = {"backbone": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    backbone: PreTrainedConfig | dict | None = None
    backbone_name: str | None = None
    backbone_sha256: str | None = None
    tasks: list | None = None
    pooling: str = "mean"
    classifier_dropout: float = 0.1
    modality: str = "text"

    @property
    def task_labels(self) -> dict[str, list[str]]:
        """Task name -> label names, in task-id order."""
        return {name: list(labels) for name, labels in self.tasks or []}

    @property
    def task_names(self) -> list[str]:
        """Task names in id order: ``task_ids == i`` means ``task_names[i]``."""
        return [name for name, _ in self.tasks or []]


class MultiTaskModel(PreTrainedModel):
    """Shared backbone -> pooled embedding -> dropout -> the example's task head; mean cross-entropy."""

    config_class = MultiTaskConfig
    base_model_prefix = "backbone"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    accepts_loss_kwargs = False

    def __init__(self, config: MultiTaskConfig):
        validate_config(config, _tasks_problem(config.tasks))
        super().__init__(config)
        hidden = build_trunk(self, config)
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, len(labels)) for name, labels in config.task_labels.items()})
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs) -> "MultiTaskModel":
        """``PreTrainedModel.from_pretrained``, safetensors only unless ``use_safetensors=False`` is passed."""
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **safe_loading(kwargs))

    @classmethod
    def from_backbone(
        cls,
        name: str | None,
        tasks: dict[str, list[str]],
        pooling: str = "mean",
        classifier_dropout: float = 0.1,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
    ) -> "MultiTaskModel":
        """Pretrained backbone weights + a freshly initialised head per task (safetensors only unless ``allow_pickle``)."""
        backbone_config = backbones.load_backbone_config(name, trust_remote_code)
        backbone_config._name_or_path = backbones.public_name(name)  # never keep a local absolute path in a saved config
        config = MultiTaskConfig(
            backbone=backbone_config,
            backbone_name=backbones.public_name(name),
            backbone_sha256=backbones.DEFAULT_BACKBONE_SHA256 if name in (None, "", backbones.DEFAULT_BACKBONE) else None,
            tasks=[[task, [str(label) for label in labels]] for task, labels in tasks.items()],
            pooling=pooling,
            classifier_dropout=classifier_dropout,
            modality=backbones.modality_of(backbone_config),
        )
        model = cls(config)
        model.backbone = backbones.load_backbone(name, trust_remote_code, allow_pickle)
        return model

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def embed(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Pooled shared-backbone embedding."""
        return backbones.embed(self.backbone, self.config.pooling, **inputs)

    def task_logits(self, embedding: torch.Tensor, task: str) -> torch.Tensor:
        """Logits of one task's head for pooled embeddings."""
        return self.heads[task](self.dropout(embedding))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **unused,
    ) -> SequenceClassifierOutput:
        """Logits are the task's own when the batch holds one task; a mixed batch gets logits padded to
        the widest head with a very negative value (argmax stays right). Loss = mean over examples of
        each example's own task cross-entropy."""
        embedding = self.embed(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               pixel_values=pixel_values, inputs_embeds=inputs_embeds)
        task_names = self.config.task_names
        if task_ids is None:
            if len(task_names) > 1:
                raise ValueError(f"this model has {len(task_names)} tasks ({', '.join(task_names)}): pass task_ids")
            task_ids = torch.zeros(embedding.shape[0], dtype=torch.long, device=embedding.device)
        present = torch.unique(task_ids).tolist()
        if len(present) == 1:
            logits = self.task_logits(embedding, task_names[present[0]])
            loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
            return SequenceClassifierOutput(loss=loss, logits=logits)
        width = max(self.heads[task_names[t]].out_features for t in present)
        logits = embedding.new_full((embedding.shape[0], width), torch.finfo(embedding.dtype).min)
        loss = embedding.new_zeros(()) if labels is not None else None
        for t in present:
            rows = task_ids == t
            task_logits = self.task_logits(embedding[rows], task_names[t])
            logits[rows, : task_logits.shape[-1]] = task_logits.to(logits.dtype)
            if labels is not None:
                loss = loss + nn.functional.cross_entropy(task_logits, labels[rows], reduction="sum")
        if loss is not None:
            loss = loss / embedding.shape[0]
        return SequenceClassifierOutput(loss=loss, logits=logits)


def _tasks_problem(tasks) -> str | None:
    """What is wrong with ``config.tasks`` (``[[name, [label names]], ...]``), or None."""
    if not tasks:
        return "it names no task (give tasks as [[name, [label names]], ...])"
    if any(not isinstance(task, (list, tuple)) or len(task) != 2 or not isinstance(task[1], (list, tuple)) or not task[1] for task in tasks):
        return "tasks must be [[name, [label names]], ...] with at least one label per task"
    names = [str(task[0]) for task in tasks]
    if len(set(names)) != len(names):
        return f"task names repeat ({', '.join(names)})"
    return None


AutoConfig.register(MultiTaskConfig.model_type, MultiTaskConfig, exist_ok=True)
AutoModel.register(MultiTaskConfig, MultiTaskModel, exist_ok=True)
