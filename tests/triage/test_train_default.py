"""The hand-labelled real tweets: every label is a sensitivity level, every id is a tweet of the
shared file, the two samples never overlap, and the model-picked sample trains only, never on the
rows the benchmarks replay."""

import csv

from triage.train_default import (
    BENCH_ROWS,
    HERE,
    REAL_WEIGHT,
    load_sensitivity,
    sensitivity_rows,
    sensitivity_validation,
    twcs_candidates,
    twcs_labelled,
)

LEVELS = {"none", "account", "security", "fraud"}


def _ids(file: str) -> list[str]:
    return [r["tweet_id"] for r in csv.DictReader((HERE / "data" / file).open())]


def test_both_samples_name_real_tweets_once_with_a_level(shared_data):
    shared = shared_data("twcs/spotifycares_inbound.csv").parents[1]
    first, second = _ids("twcs_sensitivity_labels.csv"), _ids("twcs_sensitivity_candidates.csv")
    assert len(set(first)) == len(first) and len(set(second)) == len(second)
    assert not set(first) & set(second)
    assert len(twcs_labelled(shared)) == len(first)  # every id is a tweet of the shared file
    assert len(twcs_labelled(shared, "twcs_sensitivity_candidates.csv")) == len(second)
    assert {lab for *_, lab in twcs_labelled(shared)} | {lab for *_, lab in twcs_candidates(shared)} <= LEVELS


def test_the_model_picked_sample_trains_but_never_measures_nor_touches_the_benchmark_rows(shared_data):
    shared = shared_data("twcs/spotifycares_inbound.csv").parents[1]
    bench_texts = {r["text"] for r in list(csv.DictReader((shared / "twcs/spotifycares_inbound.csv").open()))[:BENCH_ROWS]}
    picked = twcs_candidates(shared)
    assert picked and len(picked) < len(_ids("twcs_sensitivity_candidates.csv"))  # some fell in the bench rows
    assert not {t for _, t, _ in picked} & bench_texts
    texts, labels, weights = load_sensitivity(shared)
    assert len(texts) == len(labels) == len(weights)
    trained = set(texts)
    assert all(t in trained for _, t, _ in picked)
    held = {t for vt, _ in sensitivity_validation(shared).values() for t in vt}
    assert not {t for _, t, _ in picked} & held


def test_written_posts_are_labelled_levels_and_their_held_out_halves_never_train(shared_data):
    shared = shared_data("twcs/spotifycares_inbound.csv").parents[1]
    from triage.train import read_csv
    from triage.train_default import WRITTEN_BRANDS, WRITTEN_EVAL, WRITTEN_LANGUAGES, WRITTEN_TRAIN

    for file in (*WRITTEN_BRANDS.values(), WRITTEN_TRAIN, WRITTEN_LANGUAGES, *WRITTEN_EVAL.values()):
        texts, labels = read_csv(HERE / "data" / file)
        assert set(labels) <= LEVELS and len(set(texts)) == len(texts), file
        assert {"security", "fraud"} <= set(labels) and {"none", "account"} <= set(labels), file
    validation = sensitivity_validation(shared)
    for name in WRITTEN_BRANDS:  # half of each written file measures
        held, _ = validation[name]
        assert 0.35 < len(held) / len(read_csv(HERE / "data" / WRITTEN_BRANDS[name])[0]) < 0.65, name
    texts, _, _ = load_sensitivity(shared)
    trained = set(texts)
    for name, file in WRITTEN_EVAL.items():  # measured whole, never trained on
        assert validation[name][0] == read_csv(HERE / "data" / file)[0]
    held = {t for name in (*WRITTEN_BRANDS, *WRITTEN_EVAL, "social_written") for t in validation[name][0]}
    assert not trained & held  # (real tweets split by id: two customers may tweet the same words)
    for file in (WRITTEN_TRAIN, WRITTEN_LANGUAGES):  # the training-only files train whole
        assert set(read_csv(HERE / "data" / file)[0]) <= trained, file


def test_cross_validation_holds_out_the_labelled_social_posts_and_only_them(shared_data):
    shared = shared_data("twcs/spotifycares_inbound.csv").parents[1]
    from triage.train import read_csv

    rows = sensitivity_rows(shared)
    assert [r.text for r in rows] == load_sensitivity(shared)[0]
    social = [r for r in rows if r.social]
    real = {t for _, t, _ in twcs_labelled(shared)} | {t for _, t, _ in twcs_candidates(shared)}
    banking = set(read_csv(shared / "banking77/train.csv")[0])
    assert {r.text for r in rows if r.weight == REAL_WEIGHT} <= {r.text for r in social}  # every real tweet
    assert {r.text for r in social} & real and not {r.text for r in social} & banking
    assert 0 < len(social) < len(rows) / 2


def test_the_random_real_sample_measures_and_never_trains(shared_data):
    shared = shared_data("twcs/spotifycares_inbound.csv").parents[1]
    from triage.eval_escalation import RANDOM_SAMPLE

    sample = twcs_labelled(shared, RANDOM_SAMPLE)
    ids = set(_ids(RANDOM_SAMPLE))
    assert len(sample) == len(ids) == len(_ids(RANDOM_SAMPLE))  # each id once, each a tweet of the shared file
    assert {lab for *_, lab in sample} <= LEVELS
    # training reads the other two samples only: the random one shares no tweet with them
    assert not ids & (set(_ids("twcs_sensitivity_labels.csv")) | set(_ids("twcs_sensitivity_candidates.csv")))
    bench = {r["tweet_id"] for r in list(csv.DictReader((shared / "twcs/spotifycares_inbound.csv").open()))[:BENCH_ROWS]}
    assert not ids & bench  # the benchmarks replay none of it
