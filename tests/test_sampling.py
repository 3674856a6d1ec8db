"""K-shot and episode sampling guarantees."""

import warnings

import numpy as np
import pytest

from hf_transfer.data.sampling import ClassBalancedSampler, EpisodeSampler, k_shot_indices, shots_per_class, split_classes

LABELS = [0] * 10 + [1] * 7 + [2] * 3


def test_k_shot_takes_k_per_class_and_is_deterministic_by_seed():
    first = k_shot_indices(LABELS, 3, seed=0)
    assert first == k_shot_indices(LABELS, 3, seed=0)
    assert first != k_shot_indices(LABELS, 3, seed=1)
    picked = np.asarray(LABELS)[first]
    assert np.bincount(picked).tolist() == [3, 3, 3]
    assert len(set(first)) == len(first)


def test_k_shot_keeps_small_classes_whole_with_a_warning():
    with pytest.warns(UserWarning, match="fewer than K=5"):
        chosen = k_shot_indices(LABELS, 5, seed=0)
    assert np.bincount(np.asarray(LABELS)[chosen]).tolist() == [5, 5, 3]


def test_k_shot_all_returns_everything_and_shots_per_class_reports_smallest():
    assert k_shot_indices(LABELS, "all", seed=3) == list(range(len(LABELS)))
    assert shots_per_class(LABELS) == 3


def test_k_shot_sample_does_not_depend_on_anything_but_labels_and_seed():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = k_shot_indices(list(LABELS), 4, seed=7)
        b = k_shot_indices(np.asarray(LABELS), 4, seed=7)
    assert a == b


def test_episode_sampler_shapes_disjoint_support_query_and_relabelling():
    labels = [c for c in range(8) for _ in range(6)]
    sampler = EpisodeSampler(labels, n_way=3, k_shot=2, n_query=3, classes=[0, 1, 2, 3], seed=0)
    for _ in range(20):
        episode = sampler.sample()
        assert len(episode.classes) == 3 and set(episode.classes) <= {0, 1, 2, 3}
        assert len(episode.support) == 6 and len(episode.query) == 9
        assert not set(episode.support) & set(episode.query)
        for index, new_label in zip(episode.support + episode.query, episode.support_labels + episode.query_labels):
            assert labels[index] == episode.classes[new_label]


def test_meta_train_and_meta_test_classes_are_disjoint():
    train, test = split_classes(range(10), meta_train=range(6))
    assert train == [0, 1, 2, 3, 4, 5] and test == [6, 7, 8, 9]
    labels = [c for c in range(10) for _ in range(5)]
    train_sampler = EpisodeSampler(labels, 2, 1, 2, classes=train, seed=0)
    test_sampler = EpisodeSampler(labels, 2, 1, 2, classes=test, seed=0)
    seen_train = {c for _ in range(30) for c in train_sampler.sample().classes}
    seen_test = {c for _ in range(30) for c in test_sampler.sample().classes}
    assert seen_train <= set(train) and seen_test <= set(test) and not seen_train & seen_test


def test_episode_sampler_refuses_too_few_classes():
    with pytest.raises(ValueError, match="need N=5"):
        EpisodeSampler([0, 0, 0, 1, 1, 1], n_way=5, k_shot=1, n_query=1)


def test_multi_label_k_shot_gives_every_label_k_examples_and_nothing_redundant():
    import random

    from hf_transfer.data.sampling import multi_label_k_shot_indices

    rng = random.Random(0)
    label_sets = [sorted(rng.sample(range(8), rng.randint(1, 3))) for _ in range(300)]
    for k in (1, 2, 5):
        chosen = multi_label_k_shot_indices(label_sets, k, seed=3)
        assert chosen == multi_label_k_shot_indices(label_sets, k, seed=3) and len(set(chosen)) == len(chosen)
        counts = {label: sum(label in label_sets[i] for i in chosen) for label in range(8)}
        assert min(counts.values()) >= k
        for index in chosen:  # minimal: removing any example leaves some label below K
            assert any(counts[label] - 1 < k for label in label_sets[index])
    assert multi_label_k_shot_indices(label_sets, 2, seed=3) != multi_label_k_shot_indices(label_sets, 2, seed=4)
    assert multi_label_k_shot_indices(label_sets, "all", seed=0) == list(range(300))


def test_multi_label_k_shot_keeps_a_rare_label_whole_with_a_warning():
    from hf_transfer.data.sampling import multi_label_k_shot_indices

    label_sets = [[0], [0, 1], [0], [0], [2], [2], [2], [0, 2]]
    with pytest.warns(UserWarning, match="fewer than K=3 examples keep all of theirs: 1 \\(1\\)"):
        chosen = multi_label_k_shot_indices(label_sets, 3, seed=0)
    assert 1 in chosen and sum(0 in label_sets[i] for i in chosen) >= 3 and sum(2 in label_sets[i] for i in chosen) >= 3


def test_class_balanced_sampler_pairs_same_class_examples_and_reshuffles_each_pass():
    labels = [0] * 6 + [1] * 5 + [2] * 4 + [3] * 3 + [4]
    sampler = ClassBalancedSampler(labels, seed=3)
    first, second = list(sampler), list(sampler)
    for order in (first, second):
        assert len(order) == len(sampler) == 6 + 6 + 4 + 4 + 2  # an odd class's last example gets a partner
        assert set(order) == set(range(len(labels)))  # one pass: every example at least once ...
        repeated = [i for i in set(order) if order.count(i) == 2]
        assert sorted(labels[i] for i in repeated) == [1, 3, 4] and len(order) - len(set(order)) == 3  # ... once more for odd classes
        pairs = [(order[i], order[i + 1]) for i in range(0, len(order), 2)]
        assert all(labels[a] == labels[b] for a, b in pairs)  # every aligned pair shares a class
        assert all(a != b for a, b in pairs if labels[a] != 4)  # a partner is another member, unless the class has one
    assert first != second  # each pass reshuffles
    assert list(ClassBalancedSampler(labels, seed=3)) == first  # reproducible by seed


def test_class_balanced_sampler_gives_every_example_a_positive_in_its_batch():
    labels = [c for c in range(40) for _ in range(4)] + [c for c in range(9) for _ in range(5)]  # odd classes too
    order = list(ClassBalancedSampler(labels, seed=0))
    for start in range(0, len(order), 16):
        batch = [labels[i] for i in order[start:start + 16]]
        assert all(batch.count(label) >= 2 for label in batch)
    rng = np.random.default_rng(0)
    random_order = rng.permutation(len(labels))
    alone = sum(sum(1 for l in b if b.count(l) == 1) for b in ([labels[i] for i in random_order[s:s + 16]] for s in range(0, 160, 16)))
    assert alone > len(labels) // 2  # the problem it solves
