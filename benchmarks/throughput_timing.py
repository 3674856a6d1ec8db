"""Timing machinery of ``train_throughput.py``: the matmul peak, a per-step probe, lockstep runs of two arms.

The probe (a TrainerCallback plus a collator wrapper) times every optimizer step and records the shape of
every training batch; it is attached identically to every arm. :class:`Lockstep` makes two genuine
``train()`` loops take turns one optimizer step at a time (see ``train_throughput.py``'s docstring).
"""

from __future__ import annotations

import contextlib
import gc
import io
import statistics
import threading
import time

import common


class MatmulPeak:
    """FLOP/s of ``torch.matmul`` on two ``size x size`` matrices of ``dtype`` on ``device``: the machine's peak."""

    def __init__(self, size: int, device: str = "cpu", precision: str = "fp32"):
        self.size, self.device, self.precision = size, device, precision
        self.label = f"{precision} matmul peak"
        self.sync = common.synchronizer(device)

    def operands(self, seed: int | None = None):
        import torch

        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        a = torch.randn(self.size, self.size, generator=generator).to(self.device, dtype)
        b = torch.randn(self.size, self.size, generator=generator).to(self.device, dtype)
        out = torch.empty(self.size, self.size, device=self.device, dtype=dtype)
        torch.matmul(a, b, out=out)  # warm-up
        self.sync()
        return a, b, out

    def rate(self, a, b, out) -> float:
        """One timed product, in FLOP/s (2 N^3 FLOPs)."""
        import torch

        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        self.sync()
        return 2.0 * self.size**3 / (time.perf_counter() - start)

    def measure(self, reps: int = 5) -> float:
        """Median of ``reps`` timed products."""
        operands = self.operands(seed=0)
        return statistics.median(self.rate(*operands) for _ in range(reps))


class Lockstep:
    """Members take turns in a fixed cycle (A, B, [peak], A, B, ...); only the member holding the turn runs."""

    PEAK = "fp32 matmul peak"

    def __init__(self, trainers: list[str], peak: bool):
        self.cond = threading.Condition()
        self.trainers = list(trainers)
        self.members = self.trainers + ([self.PEAK] if peak else [])
        self.turn = None
        self.arrived: set[str] = set()
        self.done: set[str] = set()
        self.failed = False

    def _wait(self, me: str) -> None:  # with self.cond held
        self.cond.wait_for(lambda: self.turn == me or self.failed)

    def _next(self, me: str) -> str | None:  # the next member in the cycle that has not finished
        index = self.members.index(me)
        for k in range(1, len(self.members)):
            member = self.members[(index + k) % len(self.members)]
            if member not in self.done:
                return member
        return None

    def trainers_done(self) -> bool:
        return all(t in self.done for t in self.trainers)

    def arrive(self, me: str) -> None:
        """Set-up finished (on_train_begin): report ready, then wait for the first turn."""
        with self.cond:
            self.arrived.add(me)
            self.cond.notify_all()
            self._wait(me)

    def handoff(self, me: str) -> None:
        with self.cond:
            following = self._next(me)
            if following is not None:
                self.turn = following
                self.cond.notify_all()
                self._wait(me)

    def finish(self, me: str) -> None:
        """Training finished (on_train_end): hand over for good, then wait until every trainer has finished."""
        with self.cond:
            self.done.add(me)
            following = self._next(me)
            if following is not None:
                self.turn = following
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.trainers_done() or self.failed)

    def fail(self) -> None:
        with self.cond:
            self.failed = True
            self.cond.notify_all()

    def peak_member(self, peak: MatmulPeak, rates: list[float]) -> None:
        """One timed matmul per turn, until every trainer has finished (a thread's target)."""
        operands = peak.operands()
        self.arrive(self.PEAK)
        while True:
            with self.cond:
                if self.trainers_done() or self.failed:
                    self.done.add(self.PEAK)
                    self.cond.notify_all()
                    return
            rates.append(peak.rate(*operands))
            self.handoff(self.PEAK)


def _rng_state():
    import random

    import numpy
    import torch

    return torch.get_rng_state(), random.getstate(), numpy.random.get_state()


def _set_rng_state(state) -> None:
    import random

    import numpy
    import torch

    torch.set_rng_state(state[0])
    random.setstate(state[1])
    numpy.random.set_state(state[2])


def make_probe(name: str = "", lockstep: Lockstep | None = None, device: str = "cpu"):
    from transformers import TrainerCallback

    sync = common.synchronizer(device)

    class Probe(TrainerCallback):
        """Per optimizer step: the seconds its own thread spent on it; per training batch: (batch size, padded
        tokens, real tokens, padded length), in the order the dataloader produced them."""

        def __init__(self):
            self.step_times: list[float] = []
            self.batches: list[tuple[int, int, int, int]] = []
            self.training = False
            self.threads = None
            self.trainer = None
            self._resumed = None

        def wrap(self, collator):
            def collate(features):
                batch = collator(features)
                if self.training:
                    ids = batch["input_ids"]
                    real = int(batch["attention_mask"].sum()) if "attention_mask" in batch else ids.numel()
                    self.batches.append((ids.shape[0], ids.numel(), real, ids.shape[1]))
                return batch

            return collate

        def on_train_begin(self, args, state, control, **kwargs):
            import torch

            self.training = True
            self.threads = torch.get_num_threads()
            if lockstep is not None:
                rng = _rng_state()
                lockstep.arrive(name)
                _set_rng_state(rng)
            self._resumed = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync()  # CUDA: the step's kernels have finished
            self.step_times.append(time.perf_counter() - self._resumed)
            if lockstep is not None:  # the global RNGs go with the turn: each run draws exactly what it would alone
                rng = _rng_state()
                lockstep.handoff(name)
                _set_rng_state(rng)
            self._resumed = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.training = False
            if lockstep is not None:
                lockstep.finish(name)

    return Probe()


def summarise(probe, metrics: dict, skip: int, flops_of) -> dict:
    """Throughput over steps skip+1..N; batch i is the one trained at step i."""
    steps = len(probe.step_times)
    if len(probe.batches) < steps:
        raise RuntimeError(f"recorded {len(probe.batches)} batches for {steps} steps")
    batches = probe.batches[skip:steps]
    times = probe.step_times[skip:]
    seconds = sum(times)
    samples = sum(b[0] for b in batches)
    padded = sum(b[1] for b in batches)
    real = sum(b[2] for b in batches)
    return {
        "samples_per_s": samples / seconds,
        "step_ms": 1000 * seconds / len(batches),
        "step_times": times,
        "padded_tokens_per_s": padded / seconds,
        "real_tokens_per_s": real / seconds,
        "mean_padded_len": padded / samples,
        "mean_real_len": real / samples,
        "flops_padded_per_s": sum(flops_of(b[0], b[3], b[1]) for b in batches) / seconds,
        "flops_real_per_s": sum(flops_of(b[0], b[3], b[2], attention=False) for b in batches) / seconds,
        "train_runtime_samples_per_s": sum(b[0] for b in probe.batches[:steps]) / metrics["train_runtime"],
        "train_loss": metrics.get("train_loss", float("nan")),
        "threads": probe.threads,
    }


def run_pair(arms: dict, order: list[str], mode: str, peak: MatmulPeak | None = None,
             device: str = "cpu") -> tuple[dict, list[float]]:
    """Train each arm once, in lockstep threads (mode 'step') or one after the other (mode 'run').

    Returns ({name: (probe, metrics)}, matmul FLOP/s samples). In 'step' mode with ``peak`` a third
    member times one matmul per cycle, so the peak is sampled under the same machine load as the
    steps; in 'run' mode the peak is measured before and after. stdout (the recipe's metrics line,
    Trainer log lines) is swallowed.
    """
    results, rates = {}, []
    with contextlib.redirect_stdout(io.StringIO()):
        if mode == "run":
            if peak:
                rates.append(peak.measure())
            for name in order:
                probe = make_probe(name, device=device)
                results[name] = (probe, arms[name](probe))
                gc.collect()
            if peak:
                rates.append(peak.measure())
            return results, rates
        lockstep = Lockstep(order, peak=bool(peak))
        errors = {}

        def target(name, probe):
            try:
                results[name] = (probe, arms[name](probe))
            except BaseException as error:  # noqa: BLE001 -- re-raised in the main thread
                errors[name] = error
                lockstep.fail()

        threads = []
        starts = [(name, target, (name, make_probe(name, lockstep, device))) for name in order]
        if peak:
            starts.append((Lockstep.PEAK, lockstep.peak_member, (peak, rates)))
        for name, function, arguments in starts:  # one at a time: the next starts once the previous is ready
            thread = threading.Thread(target=function, args=arguments, daemon=True)
            thread.start()
            threads.append(thread)
            with lockstep.cond:
                lockstep.cond.wait_for(lambda: name in lockstep.arrived or lockstep.failed)
        with lockstep.cond:
            lockstep.turn = order[0]
            lockstep.cond.notify_all()
        for thread in threads:
            thread.join()
        if errors:
            raise next(iter(errors.values()))
    gc.collect()
    return results, rates


def compare(arms: dict, summarise_run, repeats: int, mode: str, log, peak: MatmulPeak,
            device: str = "cpu") -> dict[str, list]:
    """``repeats`` runs of both arms, the first arm first in even repeats and second in odd ones."""
    names = list(arms)
    out = {name: [] for name in names}
    for repeat in range(repeats):
        order = common.alternate(names, repeat)
        runs, rates = run_pair(arms, order, mode, peak, device)
        peak_rate = statistics.median(rates)
        for name in order:
            result = summarise_run(*runs[name])
            result["peak"] = peak_rate
            out[name].append(result)
            log(f"  repeat {repeat + 1}/{repeats} {name:<14} {result['samples_per_s']:6.2f} samples/s  "
                f"({result['step_ms']:.0f} ms/step, mean padded length {result['mean_padded_len']:.1f}, "
                f"train_loss {result['train_loss']:.6f}, {result['threads']} threads)")
        log(f"  repeat {repeat + 1}/{repeats} {peak.label} {peak_rate / 1e9:.1f} GFLOP/s (median of {len(rates)} samples)")
    return out
