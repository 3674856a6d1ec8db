"""K-mention sampling for few-shot NER: sentences chosen so that every entity type has at least K mentions.

A sentence holds several mentions of several types, so "K sentences per type" is not defined; the usual few-shot
NER support set (Yang and Katiyar, 2020; Few-NERD's greedy sampling) is the greedy one: types are served from the
rarest up, each drawing sentences in a seeded random order until it has K mentions, then every sentence that the later
draws made unnecessary is dropped (``sampling.greedy_k_cover``). Mentions are the entities seqeval reads from the tags
(the same definition the entity-level F1 uses). Sentences without any entity are never chosen. A type with fewer than
K mentions in the train split is refused before any work (``check_k_mentions``): a sample holding fewer of it would
not be the K-mention sample the table says.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from hf_transfer.data.sampling import greedy_k_cover
from hf_transfer.errors import UserInputError


def mention_counts(tag_sequences: Sequence[Sequence[str]]) -> list[Counter]:
    """How many mentions of each entity type every sentence holds (seqeval's entities of its BIO tags)."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [Counter(kind for kind, _, _ in get_entities(list(tags))) for tags in tag_sequences]


def k_mention_indices(tag_sequences: Sequence[Sequence[str]], k: int | str, seed: int) -> list[int]:
    """Indices of the sentences of a greedy K-mention sample (every type at least K mentions, none superfluous), sorted;
    ``k="all"`` is every sentence. A function of ``(tag_sequences, k, seed)``."""
    if k == "all":
        return list(range(len(tag_sequences)))
    return sorted(greedy_k_cover(mention_counts(tag_sequences), int(k), seed))


def check_k_mentions(tag_sequences: Sequence[Sequence[str]], k: int | str, dataset: str) -> None:
    """Refuse, before any work, a K for which some entity type of the train split has fewer than K mentions."""
    totals: Counter = Counter()
    for counts in mention_counts(tag_sequences):
        totals.update(counts)
    if not totals:
        raise UserInputError(f"Dataset '{dataset}': the train split holds no entity (every tag is O).",
                             "tag the entities in the train split (B-TYPE, I-TYPE).")
    if k == "all":
        return
    short = sorted((count, kind) for kind, count in totals.items() if count < int(k))
    if short:
        count, kind = short[0]
        others = f" ({len(short)} types have fewer than {k})" if len(short) > 1 else ""
        raise UserInputError(f"Dataset '{dataset}': K={k} mentions per entity type, but type '{kind}' has only {count} in "
                             f"the train split{others}; the sample would be unbalanced.",
                             f"lower --shots to at most {count}, use --shots all, or add sentences with that type.")
