"""Every ``nn.Module`` / ``PreTrainedModel`` hf_transfer defines, one file each.

``classifier`` (TransferConfig/TransferModel: backbone + pooling + head), ``multitask`` (one backbone,
a head per task), ``student`` (a shallower copy of a trained classifier), ``domain_adversarial``
(classifier + domain discriminator, for DANN), ``contrastive`` (encoder + projection head);
``common`` holds what they share (config checks, the backbone trunk, safe loading, unwrapping);
``build`` makes a recipe's classifier and processor from its ``ModelArguments`` (imported on its own:
it loads the image-processing stack, which ``import hf_transfer`` does not need).
Importing this package registers the configs and models with the transformers Auto classes.
"""

from hf_transfer.models.classifier import TransferConfig, TransferModel
from hf_transfer.models.common import input_to, unwrap
from hf_transfer.models.contrastive import ContrastiveEncoder, ProjectionHead
from hf_transfer.models.domain_adversarial import DomainAdversarialModel, DomainAdversarialOutput
from hf_transfer.models.multitask import MultiTaskConfig, MultiTaskModel
from hf_transfer.models.student import make_student, parse_layers, spread_layers

__all__ = [
    "ContrastiveEncoder", "DomainAdversarialModel", "DomainAdversarialOutput", "MultiTaskConfig", "MultiTaskModel",
    "ProjectionHead", "TransferConfig", "TransferModel", "input_to", "make_student", "parse_layers", "spread_layers", "unwrap",
]
