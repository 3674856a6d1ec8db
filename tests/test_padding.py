"""skip_padding: linear layers on real tokens only, the same outputs, zeros at the padded positions."""

from __future__ import annotations

import contextlib

import pytest
import torch

from hf_transfer import testing
from hf_transfer.models.classifier import TransferModel
from hf_transfer.padding import PaddingSkipper, _RealTokenLinears, outputs_unchanged, skip_padding


def _batch():
    rows = testing.toy_sentences(3, seed=2)
    return dict(testing.tiny_tokenizer()([r["text"] for r in rows], padding=True, return_tensors="pt"))


def test_linear_layers_skip_the_padded_tokens_and_real_tokens_keep_their_outputs(tiny_text_backbone):
    torch.manual_seed(0)
    model = TransferModel.from_backbone(str(tiny_text_backbone), {0: "a", 1: "b"}).double().eval()
    batch = _batch()
    pad = batch["attention_mask"] == 0
    assert pad.any() and not pad.all(dim=1).any()
    seen = []
    hook = model.backbone.encoder.layer[0].intermediate.dense.register_forward_hook(lambda m, a, out: seen.append(out))
    padded = model(**batch).logits
    with skip_padding(batch["attention_mask"]):
        free = model(**batch).logits
    hook.remove()
    assert torch.allclose(free, padded, rtol=0, atol=1e-12)
    assert seen[0][pad].abs().sum() > 0 and not seen[1][pad].any()  # the padded rows were not computed
    assert torch.allclose(seen[1][~pad], seen[0][~pad], rtol=0, atol=1e-12)
    assert outputs_unchanged(lambda: model(**batch).logits, batch["attention_mask"])


def test_position_mixing_models_are_caught_and_unpadded_batches_left_alone():
    torch.manual_seed(0)
    batch = _batch()
    embed, linear = torch.nn.Embedding(1000, 4), torch.nn.Linear(4, 2)
    unmasked_mean = lambda: linear(embed(batch["input_ids"])).mean(dim=1)  # noqa: E731  pads count in the mean
    assert not outputs_unchanged(unmasked_mean, batch["attention_mask"])
    for mask in (None, torch.ones(3, 5, dtype=torch.long)):
        assert isinstance(skip_padding(mask), contextlib.nullcontext)


def test_an_input_changed_in_place_is_gathered_again():
    torch.manual_seed(0)
    mask, x, linear = torch.tensor([[1, 1, 0], [1, 0, 0]]), torch.randn(2, 3, 4), torch.nn.Linear(4, 2)
    with skip_padding(mask):
        first = linear(x)
        x.mul_(2)
        second = linear(x)
    real = mask.bool()
    assert torch.allclose(second[real], linear(x)[real]) and not torch.allclose(first[real], second[real])
    assert not second[~real].any()


def test_padding_skipper_probes_once_even_on_an_unpadded_first_batch(tiny_text_backbone, caplog):
    """A first batch without padding is probed with a masked position, so a position-mixing model is still caught."""
    torch.manual_seed(0)
    padded = _batch()
    full = {**padded, "attention_mask": torch.ones_like(padded["attention_mask"])}  # pad tokens taken as text
    model = TransferModel.from_backbone(str(tiny_text_backbone), {0: "a", 1: "b"}).train()
    skipper = PaddingSkipper()
    assert isinstance(skipper.context(padded), contextlib.nullcontext)  # not probed yet: padded
    skipper.check(model, full, probe=lambda b: model.embed(**b))
    assert skipper.verified is True and model.training  # probed in eval mode, training mode given back
    assert isinstance(skipper.context(padded), _RealTokenLinears)
    skipper.check(model, padded, probe=lambda b: pytest.fail("probed twice"))

    embed, linear = torch.nn.Embedding(1000, 4), torch.nn.Linear(4, 2)
    mixer = torch.nn.Sequential(embed, linear)
    skipper = PaddingSkipper()
    with caplog.at_level("WARNING", logger="hf_transfer.padding"):
        skipper.check(mixer, full, probe=lambda b: mixer(b["input_ids"]).mean(dim=1))
    assert skipper.verified is False and "skip_padding changes this model's outputs" in caplog.text
    assert isinstance(skipper.context(padded), contextlib.nullcontext)
    off = PaddingSkipper(enabled=False)
    off.check(model, padded, probe=lambda b: pytest.fail("disabled, never probed"))
    assert off.verified is None and isinstance(off.context(padded), contextlib.nullcontext)


def test_batches_with_little_padding_run_padded():
    """Under ``min_padded_share`` padded positions the per-op bookkeeping would cost more than it saves."""
    skipper = PaddingSkipper(min_padded_share=0.1)
    skipper.verified = True
    mask = torch.ones(4, 10, dtype=torch.long)
    mask[0, -1] = 0  # 1 of 40 positions padded: 2.5 %
    assert isinstance(skipper.context({"attention_mask": mask}), contextlib.nullcontext)
    mask[:, -1], mask[1, -2] = 0, 0  # 5 of 40: 12.5 %
    assert isinstance(skipper.context({"attention_mask": mask}), _RealTokenLinears)
    assert isinstance(PaddingSkipper(min_padded_share=0.0, enabled=True).context({"attention_mask": mask}), contextlib.nullcontext)  # unverified
