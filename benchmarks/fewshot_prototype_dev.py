"""Development study behind ``prototype_tuning`` / ``recommended`` (issue 15): held-out TRAIN examples, no test split.

For each dataset and seed the K-shot support set is drawn as the runner draws it (``k_shot_indices``) and a fixed
development set of ``--dev_size`` other train examples (disjoint from every support set) is scored. Arms:

- ``probe``: logistic regression on the frozen body (= ``linear_probe``); ``proto``: frozen prototypes (= ``protonet``);
- ``names0``: class names alone (= ``zeroshot``); ``protonames``: frozen prototypes with the name counted in;
- ``contrastive``: the ``contrastive`` method as it ships (class-balanced batches; = ``recommended`` at K >= 2);
  ``contrastive_names``: the same with each class's name as one more labelled member of the support set (in the
  contrastive batches and in the head's data; ``_headx``: the head without the names);
- ``hybrid``: the body tuned on the ``contrastive`` schedule by ``anchored_loss`` (prototypes as extra batch members);
- ``ftce``: the body fine-tuned by cross-entropy against cosine class vectors initialised at the prototypes and
  learned (10x the body's learning rate); ``ftce_fixed``: the same with the class vectors frozen (= ``prototype_tuning``);
  ``ftce_ninit``: the class names counted into the initial class vectors, which are then learned as in ``ftce``;
  ``prototype_tuning`` / ``recommended``: the library's methods as they ship (frozen prototypes, names when ``names_help`` says so); ``ftce_refresh``: frozen class vectors
  recomputed (class means + names, by the *current* body) at the start of every pass; ``ftce_names``: FastFit-like, the class vectors are the *tuned* body's embeddings of the
  names at every step.
- ``contrastive_e4`` / ``_e8``: ``contrastive`` with 4 / 8 passes, ``_b32`` / ``_b64``: batches of 32 / 64 (rate by
  ``contrastive_for``'s rule); ``contrastive_heads``: the shipped body with several heads (C 1/10/100, prototypes,
  [tuned, frozen] concatenated, tuned + frozen averaged); ``contrastive_ce1``: the in-batch loss plus cross-entropy to
  learned class vectors (``contrastive_pk``); ``probe_cv`` / ``contrastive_cv`` / ``prototype_tuning_cv``: heads at
  C = 1 and at the C 4-fold cross-validation over the support set picks (``heads.cross_validated_C``). Each reports three heads on the tuned body: ``_cos`` (the training-time class vectors),
  ``_lr`` (logistic regression, what the method ships), ``_proto`` (prototypes recomputed).

The training loop is written out here (AdamW, 10 % warm-up, linear decay, as ``TrainingArguments`` does) so that the
head variants can be swapped; the library's ``PrototypeTuning`` trains through ``TransferTrainer``.

    python benchmarks/fewshot_prototype_dev.py --datasets banking77,hwu64 --seeds 0 1 --arms probe ftce ftce_fixed ftce_ninit
    python benchmarks/fewshot_prototype_dev.py --datasets sst2,mr,subj,sms_spam --arms probe contrastive ftce_fixed ftce_ninit --min_steps 50
"""
import argparse, json, math, random, time
from dataclasses import replace
from pathlib import Path
import torch, torch.nn.functional as F
import common  # offline env (benchmarks/ is on sys.path when run as a script)
from hf_transfer.data import load_text_dataset
from hf_transfer.data.sampling import k_shot_indices
from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.heads import LogisticRegressionHead, PrototypeHead, cross_validated_C as cv_C
from hf_transfer.fewshot.methods.contrastive import contrastive_for
from hf_transfer.fewshot.methods import get_method
from hf_transfer.fewshot.methods.prototype_tuning import class_prototypes, names_help
from hf_transfer.fewshot.methods.zeroshot import known_class_texts

p = argparse.ArgumentParser()
p.add_argument("--datasets", default="banking77,hwu64")
p.add_argument("--k", type=int, default=8)
p.add_argument("--seeds", type=int, nargs="+", default=[0])
p.add_argument("--dev_size", type=int, default=1000)
p.add_argument("--arms", nargs="+", default=["probe", "proto", "ftce"])
p.add_argument("--epochs", type=float, default=8)
p.add_argument("--lr", type=float, default=5e-5)
p.add_argument("--bs", type=int, default=32)
p.add_argument("--scale", type=float, default=20.0)
p.add_argument("--head_lr", type=float, default=None)
p.add_argument("--min_steps", type=int, default=0)
p.add_argument("--tag", default="")
p.add_argument("--out", default=str(common.BENCHMARKS / "fewshot_prototype_dev.jsonl"))
a = p.parse_args()

enc = SentenceEncoder("default", max_length=64)
names_of = lambda splits: [splits.name_of(c).replace("_", " ") for c in range(splits.num_classes)]

def ft(texts, labels, C, seed, names=None, init_names=None, epochs=a.epochs, lr=a.lr, bs=a.bs, scale=a.scale, learn_head=True,
       refresh=False, center=False):
    torch.manual_seed(seed)
    body = enc.fresh_body()
    y = torch.tensor(labels)
    with torch.no_grad():
        e = enc.encode(texts)
        proto = F.normalize(torch.zeros(C, e.shape[1]).index_add_(0, y, e), dim=-1)
        if names is not None or init_names is not None:
            proto = F.normalize(proto + enc.encode(names or init_names), dim=-1)
        mu = torch.zeros(e.shape[1])
        if center:  # SimpleShot-style centring: class means (names counted as one more member) minus the support set's mean
            mu = e.mean(0)
            sums = torch.zeros(C, e.shape[1]).index_add_(0, y, e) + (enc.encode(names or init_names) if (names or init_names) else 0)
            counts = torch.bincount(y, minlength=C).float()[:, None] + (1.0 if (names or init_names) else 0.0)
            proto = F.normalize(sums / counts - mu, dim=-1)
    W = torch.nn.Parameter(proto.clone())
    params = [{"params": body.parameters(), "lr": lr, "weight_decay": 0.01}]
    if learn_head and names is None:
        params.append({"params": [W], "lr": a.head_lr or lr * 10, "weight_decay": 0.0})
    opt = torch.optim.AdamW(params)
    n = len(texts); steps_per = math.ceil(n / bs); total = max(a.min_steps, int(epochs * steps_per)); warm = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / (total - warm))))
    g = torch.Generator().manual_seed(seed); step = 0
    while step < total:
        if refresh:  # the prototypes follow the body: recomputed from the current body at every pass
            body.eval()
            with torch.no_grad():
                e = enc.encode(texts, body)
                W.data = F.normalize(torch.zeros(C, e.shape[1]).index_add_(0, y, e) + (enc.encode(init_names, body) if init_names else 0), dim=-1)
            body.train()
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, bs):
            if step >= total: break
            idx = perm[i:i+bs].tolist()
            z = F.normalize(enc.embed(body, [texts[j] for j in idx]), dim=-1)
            if center:
                z = F.normalize(z - mu, dim=-1)
            if names is not None:
                cls = F.normalize(enc.embed(body, names), dim=-1)
                logits = scale * z @ cls.T
            else:
                logits = scale * z @ F.normalize(W, dim=-1).T
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(); loss.backward(); opt.step(); sched.step(); step += 1
    body.eval()
    return body, W.detach(), mu

def anchored_loss(z, y, prototypes, tau):
    """Prototypes as extra members of the batch: each example's candidates are the batch's other examples and every
    class prototype; its positives are its same-class batch examples and its own prototype (SupCon-style mean)."""
    B = len(y)
    logits = torch.cat([z @ z.T, z @ prototypes.T], dim=1) / tau
    logits[:, :B] = logits[:, :B].masked_fill(torch.eye(B, dtype=torch.bool), float("-inf"))
    positive = torch.cat([(y[:, None] == y[None, :]) & ~torch.eye(B, dtype=torch.bool), F.one_hot(y, len(prototypes)).bool()], dim=1)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    return -(log_prob.masked_fill(~positive, 0.0).sum(1) / positive.sum(1)).mean()


def hybrid(texts, labels, C, k, seed, class_texts, tau):
    """The body tuned by ``anchored_loss`` on the ``contrastive_for`` schedule (batch 16, its epochs and rate)."""
    m = contrastive_for(k, C)
    torch.manual_seed(seed)
    body = enc.fresh_body(); y = torch.tensor(labels)
    use = bool(class_texts) and names_help(enc, texts, labels, C, class_texts)
    prototypes = class_prototypes(enc, texts, labels, C, class_texts if use else None)
    opt = torch.optim.AdamW(body.parameters(), lr=m.learning_rate, weight_decay=0.01)
    n = len(texts); bs = min(m.batch_size, n); total = int(m.epochs * math.ceil(n / bs)); warm = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / (total - warm))))
    g = torch.Generator().manual_seed(seed); step = 0
    while step < total:
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, bs):
            if step >= total: break
            idx = perm[i:i+bs].tolist()
            z = F.normalize(enc.embed(body, [texts[j] for j in idx]), dim=-1)
            loss = anchored_loss(z, y[idx], prototypes, tau)
            opt.zero_grad(); loss.backward(); opt.step(); sched.step(); step += 1
    return body.eval(), use


def pk_batches(labels, batch_size, g):
    """One pass in class-balanced batches: each class's shuffled examples in chunks of 2, the chunks shuffled and
    grouped ``batch_size // 2`` to a batch, so every example with a same-class partner has a positive in its batch."""
    by_class = {}
    for i in torch.randperm(len(labels), generator=g).tolist():
        by_class.setdefault(labels[i], []).append(i)
    chunks = [v[j:j + 2] for v in by_class.values() for j in range(0, len(v), 2)]
    chunks = [chunks[i] for i in torch.randperm(len(chunks), generator=g).tolist()]
    per = max(1, batch_size // 2)
    return [sum(chunks[i:i + per], []) for i in range(0, len(chunks), per)]


def contrastive_pk(texts, labels, C, k, seed, ce_weight=0.0):
    """The ``contrastive`` method's loss, schedule and rate, on class-balanced batches (``pk_batches``); with
    ``ce_weight``, plus that times cross-entropy against learned cosine class vectors (x ``a.scale``) initialised at
    the frozen prototypes, learned at 10x the body's rate (FastFit's in-batch + classification terms)."""
    from hf_transfer.objectives.contrastive import contrastive_loss
    m = contrastive_for(k, C); loss_fn = contrastive_loss(m.loss)
    torch.manual_seed(seed)
    body = enc.fresh_body(); y = torch.tensor(labels)
    W = torch.nn.Parameter(class_prototypes(enc, texts, labels, C))
    groups = [{"params": body.parameters(), "lr": m.learning_rate, "weight_decay": 0.01}]
    if ce_weight:
        groups.append({"params": [W], "lr": 10 * m.learning_rate, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups)
    n = len(texts); bs = min(m.batch_size, n); total = int(m.epochs * math.ceil(n / bs)); warm = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / (total - warm))))
    g = torch.Generator().manual_seed(seed); step = 0
    while step < total:
        for idx in pk_batches(labels, bs, g):
            if step >= total: break
            z = F.normalize(enc.embed(body, [texts[j] for j in idx]), dim=-1)
            loss = loss_fn(z, y[idx], temperature=m.temperature)
            if ce_weight:
                loss = loss + ce_weight * F.cross_entropy(a.scale * z @ F.normalize(W, dim=-1).T, y[idx])
            opt.zero_grad(); loss.backward(); opt.step(); sched.step(); step += 1
    return body.eval()


out = Path(a.out)
for ds in a.datasets.split(","):
    splits = load_text_dataset(common.DATA_DIR / ds, max_test=1)  # the test split is not used
    sup = {s: k_shot_indices(splits.train_labels, a.k, s) for s in a.seeds}
    taken = set().union(*map(set, sup.values()))
    pool = [i for i in range(len(splits.train_texts)) if i not in taken]
    dev = random.Random(1234).sample(pool, min(a.dev_size, len(pool)))
    dt = [splits.train_texts[i] for i in dev]; dl = torch.tensor([splits.train_labels[i] for i in dev])
    acc = lambda pred: round(100 * (pred == dl).float().mean().item(), 2)
    C = splits.num_classes; names = names_of(splits)
    for s in a.seeds:
        texts = [splits.train_texts[i] for i in sup[s]]; labels = [splits.train_labels[i] for i in sup[s]]
        y = torch.tensor(labels)
        row = {"dataset": ds, "k": a.k, "seed": s, "epochs": a.epochs, "lr": a.lr, "bs": a.bs, "scale": a.scale, "min_steps": a.min_steps, "tag": a.tag}
        for arm in a.arms:
            t0 = time.perf_counter()
            if arm == "probe_cv":  # the probe's C: fixed 1, fixed 10, and chosen by stratified 4-fold CV over the support set
                fs, ft_ = enc.encode(texts), enc.encode(dt)
                for c in (1.0, 10.0):
                    row[f"probe_C{c:g}"] = acc(LogisticRegressionHead(c).fit(fs, y, C).predict(ft_))
                best = cv_C(fs, y, C, s)
                row["probe_cv_C"] = best; row["probe_cv"] = acc(LogisticRegressionHead(best).fit(fs, y, C).predict(ft_))
            elif arm == "prototype_tuning_cv":  # prototype_tuning's body (no names), heads at C = 1 and by support-set CV
                from hf_transfer.fewshot.methods.prototype_tuning import PrototypeTuning
                body = PrototypeTuning().train_body(enc, texts, labels, C, s)
                zs, zt = enc.encode(texts, body), enc.encode(dt, body)
                row[arm + "_C1"] = acc(LogisticRegressionHead(1.0).fit(zs, y, C).predict(zt))
                best = cv_C(zs, y, C, s); row[arm + "_C"] = best
                row[arm] = acc(LogisticRegressionHead(best).fit(zs, y, C).predict(zt))
            elif arm == "contrastive_cv":  # the shipped body; head C 1, 10, and by 4-fold CV over the (tuned) support embeddings
                m = contrastive_for(a.k, C); body = m.train_body(enc, texts, labels, s)
                zs, zt = enc.encode(texts, body), enc.encode(dt, body)
                for c in (1.0, 10.0):
                    row[f"{arm}_C{c:g}"] = acc(LogisticRegressionHead(c).fit(zs, y, C).predict(zt))
                best = cv_C(zs, y, C, s); row[arm + "_C"] = best
                row[arm] = acc(LogisticRegressionHead(best).fit(zs, y, C).predict(zt))
            elif arm == "probe":
                h = LogisticRegressionHead(1.0).fit(enc.encode(texts), y, C); row[arm] = acc(h.predict(enc.encode(dt)))
            elif arm == "proto":
                h = PrototypeHead().fit(enc.encode(texts), y, C); row[arm] = acc(h.predict(enc.encode(dt)))
            elif arm == "names0":
                row[arm] = acc((enc.encode(dt) @ enc.encode(names).T).argmax(-1))
            elif arm == "protonames":
                e = enc.encode(texts); pr = F.normalize(torch.zeros(C, e.shape[1]).index_add_(0, y, e), dim=-1)
                pr = F.normalize(pr + enc.encode(names), dim=-1); row[arm] = acc((enc.encode(dt) @ pr.T).argmax(-1))
            elif arm in ("contrastive", "contrastive_random"):  # as it ships (class-balanced batches) / random batches
                m = replace(contrastive_for(a.k, C), class_balanced=arm == "contrastive"); body = m.train_body(enc, texts, labels, s)
                h = LogisticRegressionHead(m.C).fit(enc.encode(texts, body), y, C); row[arm] = acc(h.predict(enc.encode(dt, body)))
            elif arm.startswith(("contrastive_e", "contrastive_b")):  # passes (_e8) or batch size (_b64), rate by contrastive_for's rule
                n = len(texts); m = contrastive_for(a.k, C); value = int(arm[len("contrastive_e"):])
                epochs, bs = (value, m.batch_size) if arm[12] == "e" else (m.epochs, value)
                steps = epochs * math.ceil(n / bs)
                m = replace(m, epochs=epochs, batch_size=bs, learning_rate=min(1e-4, max(2e-5, 2e-5 * 2.5 * n / steps)))
                body = m.train_body(enc, texts, labels, s)
                row[arm] = acc(LogisticRegressionHead(m.C).fit(enc.encode(texts, body), y, C).predict(enc.encode(dt, body)))
            elif arm == "contrastive_names":  # class names as extra labelled members of the batches and of the head's data
                m = contrastive_for(a.k, C); cn = known_class_texts(splits.class_names)
                row["names_help"] = names_help(enc, texts, labels, C, cn)
                body = m.train_body(enc, texts + cn, labels + list(range(C)), s)
                zs, zt = enc.encode(texts, body), enc.encode(dt, body); zn = enc.encode(cn, body)
                row[arm] = acc(LogisticRegressionHead(m.C).fit(torch.cat([zs, zn]), torch.cat([y, torch.arange(C)]), C).predict(zt))
                row[arm + "_headx"] = acc(LogisticRegressionHead(m.C).fit(zs, y, C).predict(zt))  # names in training only
            elif arm == "contrastive_heads":  # the shipped body; heads: C, prototypes, [tuned, frozen] concat, tuned+frozen average
                m = contrastive_for(a.k, C); body = m.train_body(enc, texts, labels, s)
                zs, zt, fs, ft_ = enc.encode(texts, body), enc.encode(dt, body), enc.encode(texts), enc.encode(dt)
                for c in (1.0, 10.0, 100.0):
                    row[f"{arm}_C{c:g}"] = acc(LogisticRegressionHead(c).fit(zs, y, C).predict(zt))
                row[arm + "_proto"] = acc(PrototypeHead().fit(zs, y, C).predict(zt))
                for c in (1.0, 10.0):  # the frozen probe's head at the same C values
                    row[f"probe_C{c:g}"] = acc(LogisticRegressionHead(c).fit(fs, y, C).predict(ft_))
                row[arm + "_concat"] = acc(LogisticRegressionHead(1.0).fit(torch.cat([zs, fs], 1), y, C).predict(torch.cat([zt, ft_], 1)))
                pt = LogisticRegressionHead(1.0).fit(zs, y, C).probabilities(zt); pf = LogisticRegressionHead(1.0).fit(fs, y, C).probabilities(ft_)
                row[arm + "_avg"] = acc((pt + pf).argmax(-1))
            elif arm.startswith("contrastive_ce"):  # contrastive_ce1: in-batch loss + 1 x cross-entropy to learned class vectors
                body = contrastive_pk(texts, labels, C, a.k, s, ce_weight=float(arm[len("contrastive_ce"):]))
                zs, zt = enc.encode(texts, body), enc.encode(dt, body)
                row[arm] = acc(LogisticRegressionHead(1.0).fit(zs, y, C).predict(zt))
                row[arm + "_C10"] = acc(LogisticRegressionHead(10.0).fit(zs, y, C).predict(zt))
            elif arm == "contrastive_pk":
                body = contrastive_pk(texts, labels, C, a.k, s)
                row[arm] = acc(LogisticRegressionHead(1.0).fit(enc.encode(texts, body), y, C).predict(enc.encode(dt, body)))
            elif arm.startswith("hybrid"):  # hybrid (tau 0.05) or hybrid10 (tau 0.1)
                body, used = hybrid(texts, labels, C, a.k, s, known_class_texts(splits.class_names), 0.1 if arm == "hybrid10" else 0.05)
                row[arm] = acc(LogisticRegressionHead(1.0).fit(enc.encode(texts, body), y, C).predict(enc.encode(dt, body)))
                row["names_used"] = used
            elif arm in ("prototype_tuning", "recommended"):  # the library's methods as they ship
                m = get_method(arm, a.k, C, known_class_texts(splits.class_names)); model = m.fit(enc, texts, labels, C, s)
                row[arm] = acc(torch.from_numpy(model(dt)))
                row[arm + "_names"] = bool(m.texts)
                if arm == "recommended":
                    row["recommended_chose"], row["recommended_cv"] = getattr(m, "chosen", None), getattr(m, "validation_accuracy", None)
            elif arm in ("ftce", "ftce_names", "ftce_fixed", "ftce_ninit", "ftce_refresh", "ftce_center", "ftce_center_learn"):
                body, W, mu = ft(texts, labels, C, s, names=names if arm == "ftce_names" else None,
                             init_names=names if arm in ("ftce_ninit", "ftce_refresh", "ftce_center", "ftce_center_learn") else None,
                             learn_head=arm not in ("ftce_fixed", "ftce_refresh", "ftce_center"), refresh=arm == "ftce_refresh",
                             center=arm.startswith("ftce_center"))
                zt = enc.encode(dt, body); zs = enc.encode(texts, body)
                if arm == "ftce_names":
                    W = enc.encode(names, body)
                row[arm + "_cos"] = acc((F.normalize(zt - mu, dim=-1) @ F.normalize(W, dim=-1).T).argmax(-1))
                row[arm + "_lr"] = acc(LogisticRegressionHead(1.0).fit(zs, y, C).predict(zt))
                row[arm + "_proto"] = acc(PrototypeHead().fit(zs, y, C).predict(zt))
            row[f"{arm}_s"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(row), flush=True)
        with out.open("a") as f: f.write(json.dumps(row) + "\n")
