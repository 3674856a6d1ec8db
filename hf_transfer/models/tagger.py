"""The token tagger: transformers' own ``AutoModelForTokenClassification`` on the pretrained backbone.

No hf_transfer class is involved, so a saved tagger loads with ``AutoModelForTokenClassification`` and
``pipeline("token-classification")`` anywhere, without ``import hf_transfer`` or ``trust_remote_code``. The
backbone weights are loaded by ``backbones.load_backbone`` (safetensors only, sha256 of the bundled one checked) and
put in the model's base-model slot (``base_model_prefix``, e.g. ``bert``), which is where the strategies find the body
(``strategies.base.body_of``); the head is the model's ``classifier``. The config records the backbone (name, weights'
sha256, revision) for the card, and ``finetuning_task = "token_classification"``.
"""

from __future__ import annotations

from transformers import AutoModelForTokenClassification, PreTrainedModel

from hf_transfer import backbones
from hf_transfer.errors import UserInputError

TASK = "token_classification"


def build_tagger(args, id2label: dict[int, str]) -> tuple[PreTrainedModel, object]:
    """``AutoModelForTokenClassification`` for ``ModelArguments`` ``args`` (pretrained ``args.model``) and its tokenizer."""
    if args.backbone_config:
        raise UserInputError("--backbone_config (a model from scratch) is not supported with --task token_classification.",
                             "give a pretrained text model with --model (e.g. the default).")
    config = backbones.load_backbone_config(args.model, args.trust_remote_code)
    if backbones.modality_of(config) != "text":
        raise UserInputError(f"--model '{backbones.public_name(args.model)}' is an image model; token classification tags words.",
                             "use a text model (e.g. --model default).")
    revision = getattr(config, "_commit_hash", None)
    config._name_or_path = backbones.public_name(args.model)
    config.num_labels = len(id2label)
    config.id2label = {int(i): str(label) for i, label in id2label.items()}
    config.label2id = {label: i for i, label in config.id2label.items()}
    config.classifier_dropout = args.classifier_dropout
    config.finetuning_task = TASK
    config.backbone_name = backbones.public_name(args.model)
    config.backbone_sha256 = backbones.weights_sha256(args.model)
    config.backbone_revision = revision if args.model not in (None, "", backbones.DEFAULT_BACKBONE) else backbones.DEFAULT_BACKBONE_REVISION
    try:
        model = AutoModelForTokenClassification.from_config(config, trust_remote_code=args.trust_remote_code)
    except ValueError as error:
        raise UserInputError(f"transformers has no token-classification model for a '{config.model_type}' backbone "
                             f"({str(error).splitlines()[0][:120]}).", "use a BERT-, RoBERTa- or DeBERTa-type text model.") from None
    setattr(model, model.base_model_prefix, backbones.load_backbone(args.model, args.trust_remote_code, args.allow_pickle_weights))
    tokenizer = backbones.load_processor(args.model, "text", args.trust_remote_code)
    if getattr(tokenizer, "add_prefix_space", None) is False:  # BPE tokenizers (RoBERTa, GPT-2) need it for pre-split words
        tokenizer = type(tokenizer).from_pretrained(backbones.resolve_backbone(args.model), add_prefix_space=True,
                                                    trust_remote_code=args.trust_remote_code)
    return model, tokenizer


def is_tagger(config) -> bool:
    """Whether a saved model's config is a token classifier (transformers' ``...ForTokenClassification``)."""
    return any(name.endswith("ForTokenClassification") for name in (getattr(config, "architectures", None) or ()))
