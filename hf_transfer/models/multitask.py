"""MultiTaskModel: one shared ``AutoModel`` backbone, one linear classification head per task.

A batch carries ``task_ids`` (one task index per example, see ``config.task_names``); each example
goes through the shared backbone and its own task's head. The config and the forward pass are
``hf_transfer.models.modeling_hf_transfer``'s, which every saved folder carries, so it loads with
``AutoModel.from_pretrained(folder, trust_remote_code=True)`` where hf_transfer is not installed, and without
``trust_remote_code`` after ``import hf_transfer`` (which registers this subclass).
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModel

from hf_transfer import backbones
from hf_transfer.models import modeling_hf_transfer
from hf_transfer.models.common import safe_loading, validate_config
from hf_transfer.models.modeling_hf_transfer import MultiTaskConfig


class MultiTaskModel(modeling_hf_transfer.MultiTaskModel):
    """Shared backbone -> pooled embedding -> dropout -> the example's task head; mean cross-entropy
    (``modeling_hf_transfer.MultiTaskModel``), checked and built the hf_transfer way."""

    def __init__(self, config: MultiTaskConfig):
        validate_config(config, _tasks_problem(config.tasks))
        super().__init__(config)

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

    def embed(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Pooled shared-backbone embedding; a pooling the backbone cannot give is a one-line error."""
        return backbones.embed(self.backbone, self.config.pooling, **inputs)


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
