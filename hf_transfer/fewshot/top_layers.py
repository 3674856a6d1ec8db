"""Train only the top transformer layers on cached outputs of the frozen bottom ones.

When the embeddings and lower layers are frozen, their output for a sentence never changes: compute
it once, cache it, and let every training step run (forward and backward) through the top layers
alone. With 2 of MiniLM's 6 layers trainable a step costs about a third of a full pass, so the same
time buys three times as many contrastive steps.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import BaseModelOutput

from hf_transfer.backbones import encoder_layers


class TopLayers(nn.Module):
    """A trainable copy of a backbone's top ``count`` layers, fed with cached hidden states."""

    def __init__(self, body: nn.Module, count: int):
        super().__init__()
        layers = encoder_layers(body)
        if not 1 <= count <= len(layers):
            raise ValueError(f"count must be in 1..{len(layers)}")
        self.config = body.config
        self.layers = copy.deepcopy(layers[len(layers) - count :])
        self.start = len(layers) - count

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor, **unused) -> BaseModelOutput:
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask)
        for layer in self.layers:
            output = layer(hidden_states, mask)
            hidden_states = output[0] if isinstance(output, tuple) else output
        return BaseModelOutput(last_hidden_state=hidden_states)


class CachedStates(torch.utils.data.Dataset):
    """(hidden states of the frozen bottom, label) pairs for the Trainer."""

    def __init__(self, states: list[torch.Tensor], labels: list[int]):
        self.states, self.labels = states, labels

    def __len__(self) -> int:
        return len(self.states)

    def __getitem__(self, index: int) -> dict:
        return {"hidden_states": self.states[index], "labels": self.labels[index]}


def pad_states(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Collate variable-length cached states: right-pad and build the attention mask."""
    longest = max(e["hidden_states"].shape[0] for e in examples)
    width = examples[0]["hidden_states"].shape[1]
    states = torch.zeros(len(examples), longest, width)
    mask = torch.zeros(len(examples), longest, dtype=torch.long)
    for row, example in enumerate(examples):
        length = example["hidden_states"].shape[0]
        states[row, :length] = example["hidden_states"]
        mask[row, :length] = 1
    batch = {"hidden_states": states, "attention_mask": mask}
    if "labels" in examples[0]:
        batch["labels"] = torch.tensor([e["labels"] for e in examples])
    return batch
