"""Two CPU processes (DDP, gloo) give the same contrastive loss and gradients as one process on the global batch.

This file is also the worker: the test starts it under ``torch.distributed.run`` with 2 processes.
Each rank takes its half of one fixed global batch, wraps the model the way the Trainer does
(``accelerator.prepare_model`` -> DDP), and back-propagates ``ContrastiveTrainer.compute_loss``.

Why they must agree: embeddings are gathered with ``objectives.contrastive.gather_with_grad``,
whose backward sums every rank's gradient for the local rows; every rank computes the same global
loss, so each rank's local gradient is world_size x the true one, and DDP's mean all-reduce turns that
into exactly the single-process gradient. A plain (accelerate) ``gather`` cuts the graph: the other
rank's rows become constants and the gradient is wrong; the negative control (plain gather, the local
rows put back with their graph) checks that it is.

Comparable by construction: float64, dropout off, fixed augmented views built once for the global
batch (rank r gets rows [r n/2, (r+1) n/2) of both views), same seed for the weights.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import torch

CASES = ("simclr_projection", "supcon_two_view", "supcon_one_view", "plain_gather")
TIMEOUT = 240
TOLERANCE = 1e-5


def _setup():
    """Model, projection head and the global batch, identical in every process."""
    from transformers import BertModel

    from hf_transfer import testing
    from hf_transfer.data.augment import TextAugmentation, TwoViewTextCollator

    torch.manual_seed(0)
    body = BertModel(testing.tiny_bert_config(), add_pooling_layer=False).double()
    from hf_transfer.models.contrastive import ProjectionHead

    head = ProjectionHead(32, 16).double()
    tokenizer = testing.tiny_tokenizer()
    rows = testing.toy_sentences(4, seed=3)  # 12 examples, 3 classes
    examples = [{"input_ids": tokenizer(r["text"])["input_ids"], "labels": r["label"]} for r in rows]
    batch = TwoViewTextCollator(tokenizer, TextAugmentation(token_dropout=0.2, shuffle_window=3), seed=0)(examples)
    return body, head, batch


def _trainer(case: str, body, head, output_dir: str):
    from transformers import TrainingArguments

    from hf_transfer.objectives.contrastive import nt_xent, supcon
    from hf_transfer.trainers import ContrastiveTrainer

    distributed = {"ddp_backend": "gloo"} if "RANK" in os.environ else {}
    args = TrainingArguments(output_dir=output_dir, use_cpu=True, report_to="none", disable_tqdm=True, **distributed)
    if case in ("simclr_projection", "plain_gather"):
        return ContrastiveTrainer(model=body, args=args, loss_fn=nt_xent, projection=head, temperature=0.2)
    return ContrastiveTrainer(model=body, args=args, loss_fn=supcon, temperature=0.2)


def _case_batch(case: str, batch: dict) -> dict:
    if case == "supcon_one_view":
        return {k: v for k, v in batch.items() if not k.startswith("view2_")}
    return dict(batch)


def _loss_and_gradients(trainer, model, batch: dict) -> tuple[float, dict[str, torch.Tensor]]:
    parameters = dict(trainer.accelerator.unwrap_model(trainer.model).named_parameters())
    for parameter in parameters.values():
        parameter.grad = None
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    return loss.item(), {n: p.grad.detach().clone() for n, p in parameters.items() if p.grad is not None}


def worker(output: str) -> None:
    """One rank: its half of the global batch through the DDP-wrapped model; rank 0 writes the results."""
    import hf_transfer.objectives.contrastive as objectives
    from hf_transfer.cli import end_distributed

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    results = {}
    for case in CASES:
        body, head, batch = _setup()
        trainer = _trainer(case, body, head, output)
        assert trainer.accelerator.num_processes == world == 2
        model = trainer.accelerator.prepare_model(trainer.model)
        n = len(batch["labels"]) // world
        local = {k: v[rank * n : (rank + 1) * n] for k, v in _case_batch(case, batch).items()}
        original = objectives.gather_with_grad
        if case == "plain_gather":  # negative control: accelerate's gather cuts the graph; keep only the local rows'

            def gather_local_gradient_only(x, rank=rank):
                pieces = list(trainer.accelerator.gather(x.detach()).chunk(world))
                pieces[rank] = x
                return torch.cat(pieces)

            objectives.gather_with_grad = gather_local_gradient_only
        try:
            results[case] = _loss_and_gradients(trainer, model, local)
        finally:
            objectives.gather_with_grad = original
    if rank == 0:
        torch.save(results, Path(output) / "results.pt")
    trainer.accelerator.wait_for_everyone()
    end_distributed()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_give_the_one_process_loss_and_gradients(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), __file__, str(tmp_path)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_USE_CPU"):
        env.pop(key, None)
    def one_process() -> dict:  # the single-process reference runs while the two processes start up
        reference = {}
        for case in CASES:
            body, head, batch = _setup()
            trainer = _trainer(case, body, head, str(tmp_path / "reference"))
            assert trainer.accelerator.num_processes == 1
            reference[case] = _loss_and_gradients(trainer, trainer.model, _case_batch(case, batch))
        return reference

    from hf_transfer import testing

    reference, _, _ = testing.run_beside(command, one_process, TIMEOUT, env=env)
    distributed = torch.load(tmp_path / "results.pt")

    for case in ("simclr_projection", "supcon_two_view", "supcon_one_view"):
        (loss, gradients), (ref_loss, ref_gradients) = distributed[case], reference[case]
        assert loss == pytest.approx(ref_loss, abs=TOLERANCE), case
        assert gradients.keys() == ref_gradients.keys() and len(gradients) > 10, case
        largest = max((gradients[k] - ref_gradients[k]).abs().max().item() for k in gradients)
        assert largest < TOLERANCE, (case, largest)
        assert max(g.abs().max().item() for g in gradients.values()) > 1e-3, case  # a real training signal
    assert any(k.startswith("projection.") for k in distributed["simclr_projection"][1])  # the head is synchronised too

    # The negative control: same loss value, but plain gather loses the other rank's gradient paths.
    (loss, gradients), (ref_loss, ref_gradients) = distributed["plain_gather"], reference["plain_gather"]
    assert loss == pytest.approx(ref_loss, abs=TOLERANCE)
    assert max((gradients[k] - ref_gradients[k]).abs().max().item() for k in gradients) > 100 * TOLERANCE


if __name__ == "__main__":
    worker(sys.argv[1])
