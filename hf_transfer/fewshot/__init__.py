"""Few-shot text classification: methods, the sentence encoder they share, the grid runner and its reports.

A few-shot *method* (``methods/``: ``linear_probe``, ``protonet``, ``full``, ``lora``, ``contrastive``, ``zeroshot``,
``recommended``, registered by name) is the whole recipe for K examples per class; some train through
a transfer *strategy* (``hf_transfer.strategies``), which only decides which parameters move.
``encoder.py`` (cached embeddings), ``heads.py`` (heads on fixed features), ``top_layers.py``,
``runner.py`` (``run_experiment``), ``report.py`` (``summary.md``, the plot), ``model.py`` + ``saving.py`` (a fitted
method as a classifier folder) and ``save_models.py`` (``--save_models``) are imported from their modules, so that ``heads`` can be used without importing the trainers.
"""
