"""Padding-free inference (``hf_transfer.padding``): ``hf-transfer predict``'s PyTorch engine and the few-shot encoder's
embeddings compute real tokens only, with the same probabilities and embeddings as padded passes."""

from __future__ import annotations

import pytest
import torch
from transformers import BertForSequenceClassification

from hf_transfer import testing
from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.top_layers import TopLayers
from hf_transfer.models import MultiTaskModel, TransferModel
from hf_transfer.predict import classify, load, softmax
from hf_transfer.predict.engines import TorchEngine

TOL = 1e-5
LABELS = {0: "sports", 1: "weather", 2: "food"}


def _texts() -> list[str]:
    """Sentences of 1 to 12 words, so every batch of 4 (sorted by token count) still holds some padding."""
    words = [r["text"] for r in testing.toy_sentences(6, seed=5)]
    return [" ".join(words[i: i + 1 + i % 3]) for i in range(len(words))] + ["rain", "goal"]


def _saved(kind: str, backbone, folder):
    torch.manual_seed(3)
    if kind == "transfer":
        model = TransferModel.from_backbone(str(backbone), LABELS)
    elif kind == "multitask":
        model = MultiTaskModel.from_backbone(str(backbone), {"topic": ["sports", "weather", "food"], "mood": ["up", "down"]})
    else:
        model = BertForSequenceClassification(testing.tiny_bert_config(num_labels=3, id2label=LABELS, label2id={v: k for k, v in LABELS.items()}))
    with torch.no_grad():  # clear preferences: probabilities far from uniform
        for name, parameter in model.named_parameters():
            if "classifier" in name or "heads" in name:
                parameter.mul_(40)
    model.save_pretrained(folder)
    testing.tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["transfer", "multitask", "bert"])
def test_predict_engine_is_padding_free_with_the_same_probabilities(kind, tiny_text_backbone, tmp_path):
    folder = _saved(kind, tiny_text_backbone, tmp_path / "model")
    task = "topic" if kind == "multitask" else None
    encoder, engine = load(str(folder), task=task, device="cpu")
    padded = TorchEngine(engine.model, engine.labels, engine.task_id, "cpu", skip_padding=False)
    texts = _texts()
    seen = []
    linear = next(m for n, m in engine.model.named_modules() if n.endswith("intermediate.dense"))
    hook = linear.register_forward_hook(lambda m, a, out: seen.append(out))
    free_rows = classify(texts, encoder, engine, batch_size=4, k=3)
    hook.remove()
    padded_rows = classify(texts, encoder, padded, batch_size=4, k=3)
    assert engine.padding.verified is True and padded.padding.verified is None
    assert any(not out[..., 0].all() for out in seen[2:])  # probe passes first; then zeros at padded rows: not computed
    assert len(free_rows) == len(padded_rows) == len(texts)
    for free, ref in zip(free_rows, padded_rows):
        assert [label for label, _ in free] == [label for label, _ in ref]
        assert [p for _, p in free] == pytest.approx([p for _, p in ref], abs=TOL)
    batch = encoder(texts)
    assert softmax(engine.logits(batch)) == pytest.approx(softmax(padded.logits(batch)), abs=TOL)
    assert max(softmax(padded.logits(batch)).max(axis=1)) > 0.4  # not a uniform head (3 classes)


def test_fewshot_encoder_embeddings_states_and_top_layers_are_padding_free_and_unchanged(tiny_text_backbone):
    texts = _texts()
    free, padded = SentenceEncoder(str(tiny_text_backbone), batch_size=4), SentenceEncoder(str(tiny_text_backbone), batch_size=4,
                                                                                          skip_padding=False)
    seen = []
    hook = free.body.encoder.layer[0].intermediate.dense.register_forward_hook(lambda m, a, out: seen.append(out))
    embeddings = free.encode(texts, normalize=False)
    hook.remove()
    assert any(not out[..., 0].all() for out in seen[2:])  # after the probe's two passes: padded rows left at zero
    torch.testing.assert_close(embeddings, padded.encode(texts, normalize=False), rtol=TOL, atol=TOL)
    body = free.fresh_body()  # a trained body goes through the same path
    torch.testing.assert_close(free.encode(texts, body=body), padded.encode(texts, body=body), rtol=TOL, atol=TOL)
    for a, b in zip(free.hidden_states(texts, 1), padded.hidden_states(texts, 1)):
        torch.testing.assert_close(a, b, rtol=TOL, atol=TOL)
    torch.manual_seed(0)
    top = TopLayers(free.fresh_body(), 1)
    torch.testing.assert_close(free.encode_top(top, texts), padded.encode_top(top, texts), rtol=TOL, atol=TOL)
    assert all(skipper.verified for skipper in free._skippers.values()) and len(free._skippers) == 2


def test_encoder_batches_by_token_count_not_characters(tiny_text_backbone):
    """A long unknown word is one token: it goes with the short texts, not where its character count would put it."""
    encoder = SentenceEncoder(str(tiny_text_backbone))
    texts = ["goal match team rain", "xqzvbnmlkjhgfdsa", "rain goal"]  # 6, 3 and 4 tokens; 20, 16 and 9 characters
    assert encoder._by_token_count(texts) == ["xqzvbnmlkjhgfdsa", "rain goal", "goal match team rain"]
    assert sorted(texts, key=len) != encoder._by_token_count(texts)
