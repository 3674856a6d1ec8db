"""Entity-level precision, recall and F1 (seqeval's definition, CoNLL-style chunks) and token accuracy, as an
``evaluate`` module that loads offline: ``evaluate.load(<path of this file>)``, or ``load_metric("seqeval_entities")``.

Inputs are tag strings, one list per sentence (``O``, ``B-X``, ``I-X``...). An entity counts as found only when its
type and its span both match. Returned: ``precision``, ``recall``, ``f1`` (micro over entities), ``macro_f1`` (over
entity types), ``token_accuracy``, and ``f1_<type>`` for each entity type in the references or predictions.
"""

import datasets
import evaluate

_DESCRIPTION = "Entity-level precision/recall/F1 of BIO tag sequences (seqeval, default CoNLL mode) and token accuracy."
_KWARGS = """
Args:
    predictions: list of lists of predicted tags, one list per sentence.
    references: list of lists of gold tags, of the same lengths.
Returns: precision, recall, f1, macro_f1, token_accuracy, f1_<type> for each entity type.
"""
_CITATION = "Nakayama, H. seqeval: a Python framework for sequence labeling evaluation (2018). https://github.com/chakki-works/seqeval"


class SeqevalEntities(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("string")),
                                        "references": datasets.Sequence(datasets.Value("string"))}),
        )

    def _compute(self, predictions, references) -> dict:
        from seqeval.metrics import classification_report

        for predicted, gold in zip(predictions, references):
            if len(predicted) != len(gold):
                raise ValueError(f"a sentence has {len(predicted)} predicted tags for {len(gold)} gold tags")
        tokens = sum(len(gold) for gold in references)
        correct = sum(p == g for predicted, gold in zip(predictions, references) for p, g in zip(predicted, gold))
        report = classification_report(references, predictions, output_dict=True, zero_division=0)
        micro, macro = report.pop("micro avg"), report.pop("macro avg")
        report.pop("weighted avg", None)
        scores = {"precision": float(micro["precision"]), "recall": float(micro["recall"]), "f1": float(micro["f1-score"]),
                  "macro_f1": float(macro["f1-score"]) if report else 0.0, "token_accuracy": correct / tokens if tokens else 0.0}
        scores.update({f"f1_{kind}": float(values["f1-score"]) for kind, values in sorted(report.items())})
        return scores
