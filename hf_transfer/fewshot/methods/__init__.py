"""Few-shot methods, one file each, registered by name (see ``base.py``).

Not to be confused with transfer strategies (``hf_transfer.strategies``): a method is a whole
recipe for K examples per class; a strategy only decides which parameters of a model move.
"""

# importing the files registers the methods; this order is the order of method_names()
from hf_transfer.fewshot.methods import linear_probe, protonet, finetune, contrastive, prototype_tuning, recommended, zeroshot  # noqa: F401  # isort: skip
from hf_transfer.fewshot.methods.base import (
    METHODS, FewShotMethod, Predictor, check_shots, get_method, method_names, register_method, tokenized, train_on_sample, training_arguments,
)
from hf_transfer.fewshot.methods.contrastive import Contrastive
from hf_transfer.fewshot.methods.finetune import FineTune
from hf_transfer.fewshot.methods.linear_probe import LinearProbe
from hf_transfer.fewshot.methods.protonet import ProtoNet
from hf_transfer.fewshot.methods.prototype_tuning import PrototypeTuning
from hf_transfer.fewshot.methods.zeroshot import ZeroShot, class_texts


__all__ = [
    "METHODS", "Contrastive", "FewShotMethod", "check_shots", "FineTune", "LinearProbe", "Predictor", "ProtoNet", "PrototypeTuning", "get_method",
    "method_names", "register_method", "tokenized", "train_on_sample", "training_arguments", "ZeroShot", "class_texts",
]
