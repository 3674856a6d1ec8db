"""The definition of hf_transfer's models that travels with every saved folder: configs, pooling, forward passes.

hf_transfer's ``TransferModel`` and ``MultiTaskModel`` (``hf_transfer.models``) are these classes plus what needs
the package (config checks, building from a pretrained backbone, safe loading, adapter folders), so the model
that hf_transfer trains and the one a folder's users run are one piece of code. This file imports only torch and
transformers: saving a config copies it next to ``config.json`` and names its classes in ``auto_map``
(transformers' ``register_for_auto_class``), so that without hf_transfer installed::

    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)  # images: ...ForImageClassification
    pipeline("text-classification", model=folder, trust_remote_code=True)

Where hf_transfer is imported its registered classes are used, with or without ``trust_remote_code``.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import SequenceClassifierOutput

MODULE = __name__.rsplit(".", 1)[-1]  # this file's name, where it is copied to: how auto_map names its classes


def feature_size(config: PreTrainedConfig) -> int:
    """Width of the pooled feature, what every head reads: ``hidden_size``, or for CNNs (ResNet, ConvNeXt...),
    which list one width per stage in ``hidden_sizes``, the last stage's."""
    if getattr(config, "hidden_size", None) is not None:
        return config.hidden_size
    widths = getattr(config, "hidden_sizes", None)
    if isinstance(widths, (list, tuple)) and widths:
        return widths[-1]
    raise ValueError(f"cannot tell the feature width of a {type(config).__name__}: it has no hidden_size or hidden_sizes")


def build_backbone(config: PreTrainedConfig) -> nn.Module:
    """A randomly initialised ``AutoModel`` without the unused pooler (so DDP sees no idle weights)."""
    try:
        return AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:
        return AutoModel.from_config(config)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, how: str) -> torch.Tensor:
    """Sequence embedding from token states: masked mean, or the first ([CLS]) token.

    A CNN's 4-D feature map (batch, channels, height, width) is averaged over height and width; it has
    no [CLS] token, so ``cls`` pooling is refused for it.
    """
    if hidden.dim() == 4:
        if how == "cls":
            raise ValueError("cls pooling needs a [CLS] token; this backbone returns a 4-D CNN feature map")
        return hidden.mean(dim=(2, 3))
    if how == "cls" or hidden.dim() == 2:
        return hidden[:, 0] if hidden.dim() == 3 else hidden
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def embed(backbone: nn.Module, how: str, **inputs: torch.Tensor | None) -> torch.Tensor:
    """Pooled embedding of a backbone's forward pass over the given inputs (``None`` ones are left out)."""
    inputs = {name: value for name, value in inputs.items() if value is not None}
    return pool(backbone(**inputs).last_hidden_state, inputs.get("attention_mask"), how)


class _TrunkConfig(PreTrainedConfig):
    """What every hf_transfer config holds: the nested backbone config, how to pool, the heads' dropout, and in
    ``auto_map`` the classes of this file that load it (``model_classes``: Auto class -> class name)."""

    sub_configs_defaults = {"backbone": SubConfigSpec(config_class=AutoConfig, model_type="bert")}
    model_classes = {}

    backbone: PreTrainedConfig | dict | None = None
    backbone_name: str | None = None
    backbone_sha256: str | None = None
    pooling: str = "mean"
    classifier_dropout: float = 0.1
    modality: str = "text"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)  # a loaded folder's auto_map is replaced: saving copies this file beside it
        classes = {"AutoConfig": type(self).__name__, **self.model_classes}
        self.auto_map = {auto: f"{MODULE}.{name}" for auto, name in classes.items()}


class TransferConfig(_TrunkConfig):
    """Backbone config (nested) + how to pool + the head; ``id2label`` carries the label names."""

    model_type = "hf_transfer"
    model_classes = {auto: "TransferModel" for auto in ("AutoModel", "AutoModelForSequenceClassification", "AutoModelForImageClassification")}

    backbone_revision: str | None = None
    normalize_embeddings: bool = False  # L2-normalise the pooled embedding before the head (few-shot heads fitted on unit vectors)
    # multi_label_classification: the decision threshold on sigmoid(head) chosen on the validation split; the logits the model
    # returns are shifted by -logit(threshold), so sigmoid(logits) >= 0.5 (what pipeline users cut at) means "label on"
    threshold: float | None = None
    # multi-label: each text's most probable label is predicted too, whatever its score (few-shot heads: every text has a label)
    top_label: bool = False


class MultiTaskConfig(_TrunkConfig):
    """Nested backbone config, pooling, and ``tasks``: ``[[task name, [label names in id order]], ...]``.

    A list, not a mapping, because the task order gives the ``task_ids`` and JSON configs are saved
    with sorted keys.
    """

    model_type = "hf_transfer_multitask"
    model_classes = {"AutoModel": "MultiTaskModel"}

    tasks: list | None = None

    @property
    def task_labels(self) -> dict[str, list[str]]:
        """Task name -> label names, in task-id order."""
        return {name: list(labels) for name, labels in self.tasks or []}

    @property
    def task_names(self) -> list[str]:
        """Task names in id order: ``task_ids == i`` means ``task_names[i]``."""
        return [name for name, _ in self.tasks or []]


class _TrunkModel(PreTrainedModel):
    """An ``AutoModel`` backbone (built from ``config.backbone``), pooled, then dropout before the head(s).

    Image backbones read ``pixel_values``, so ``main_input_name`` follows the modality.
    """

    base_model_prefix = "backbone"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    accepts_loss_kwargs = False  # the loss is a per-batch mean: let the Trainer scale it for accumulation

    def __init__(self, config: _TrunkConfig):
        super().__init__(config)
        self.backbone = build_backbone(config.backbone)
        self.dropout = nn.Dropout(config.classifier_dropout)
        if config.modality == "image":
            self.main_input_name = "pixel_values"

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def embed(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Pooled backbone embedding (before dropout and head)."""
        return embed(self.backbone, self.config.pooling, **inputs)


def head_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str | None) -> torch.Tensor:
    """The loss of ``config.problem_type``: binary cross-entropy (multi-label), mean squared error (regression), else
    cross-entropy over class ids."""
    if problem_type == "multi_label_classification":
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    if problem_type == "regression":
        return nn.functional.mse_loss(logits, labels.to(logits.dtype).view_as(logits))
    return nn.functional.cross_entropy(logits, labels)


def threshold_offset(threshold: float | None) -> float:
    """logit(threshold): what the returned multi-label logits are shifted by (0 for no threshold or 0.5)."""
    if threshold is None or threshold == 0.5:
        return 0.0
    return float(torch.logit(torch.tensor(threshold, dtype=torch.float64)))


class TransferModel(_TrunkModel):
    """Backbone -> pooled embedding (L2-normalised when ``config.normalize_embeddings``) -> dropout -> linear head;
    the loss of ``config.problem_type`` when labels are given (cross-entropy, binary cross-entropy, MSE)."""

    config_class = TransferConfig

    def __init__(self, config: TransferConfig):
        super().__init__(config)
        self.classifier = nn.Linear(feature_size(config.backbone), config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **unused,
    ) -> SequenceClassifierOutput:
        embedding = self.embed(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               pixel_values=pixel_values, inputs_embeds=inputs_embeds)
        if self.config.normalize_embeddings:
            embedding = nn.functional.normalize(embedding, dim=-1)
        logits = self.classifier(self.dropout(embedding))
        loss = head_loss(logits, labels, self.config.problem_type) if labels is not None else None
        if self.config.problem_type == "multi_label_classification":
            logits = logits - threshold_offset(self.config.threshold)
        return SequenceClassifierOutput(loss=loss, logits=logits)


class MultiTaskModel(_TrunkModel):
    """Shared backbone -> pooled embedding -> dropout -> the example's task head; mean cross-entropy."""

    config_class = MultiTaskConfig

    def __init__(self, config: MultiTaskConfig):
        super().__init__(config)
        hidden = feature_size(config.backbone)
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, len(labels)) for name, labels in config.task_labels.items()})
        self.post_init()

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


TransferConfig.register_for_auto_class()  # saving a config copies this file and names it in auto_map["AutoConfig"]
MultiTaskConfig.register_for_auto_class()
