"""tensorzip.Model and compress on the real stories260K model (skipped when ../shared/models is absent)."""
import os

import numpy as np
import pytest

import tensorzip as tz


def paths(models):
    d = os.path.join(models, "stories260K")
    return os.path.join(d, "stories260K.bin"), os.path.join(d, "tok512.bin"), d


def test_greedy_generation_is_llama2c_expected_output(models):
    model, tok, d = paths(models)
    m = tz.Model.load(model, weights="f32", tokenizer=tok)
    assert m.config["dim"] == 64 and m.vocab_size == 512
    with open(os.path.join(d, "expected_greedy_200.txt")) as f:
        want = f.read()
    assert m.generate("", max_tokens=200, temperature=0) == want
    assert m.generate("", max_tokens=200, temperature=0, stop=["park"]) == want[: want.index("park")]


def test_perplexity_equals_the_logits_nll(models):
    model, tok, _ = paths(models)
    m = tz.Model.load(model, weights="f32", tokenizer=tok)
    text = "Once upon a time, there was a little dog named Max. He liked to run in the sun."
    ids = m.tokenize(text)
    assert ids[0] == m.bos_id and m.detokenize(ids) == text
    lg = m.logits(ids).astype(np.float64)
    logp = lg - lg.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    nll = -np.mean([logp[i, ids[i + 1]] for i in range(len(ids) - 1)])
    r = m.perplexity(text, ctx=len(ids))
    assert r["tokens"] == len(ids) - 1
    assert abs(r["mean_nll"] - nll) < 1e-4 and abs(r["perplexity"] - np.exp(nll)) < 1e-3 * np.exp(nll)


def test_compress_writes_a_model_that_loads(models, tmp_path):
    model, tok, _ = paths(models)
    with open(os.path.join(models, "eval-text", "tinystories_valid_head.txt")) as f:
        text = f.read()
    out = str(tmp_path / "s.tz")
    r = tz.compress(model, out, method="gptq", bits=4, group=32, calib=text[:20000], calib_docs=16)
    assert os.path.exists(out) and len(r["layers"]) == 5 * 7 and 4 < r["bits_per_weight"] < 5.5
    sample = text[:3000]
    dense = tz.Model.load(model, weights="f32", tokenizer=tok).perplexity(sample)["perplexity"]
    q = tz.Model.load(out)  # the tokenizer travels in the file
    assert "q4" in q.formats
    ppl = q.perplexity(sample)["perplexity"]
    assert dense < ppl < dense * 1.25
    q8 = tz.Model.load(model, weights="q8", tokenizer=tok).perplexity(sample)["perplexity"]
    assert abs(q8 - dense) < 0.02 * dense


def test_bad_inputs(models, tmp_path):
    model, tok, _ = paths(models)
    with pytest.raises(tz.Error, match="nope.gguf"):
        tz.Model.load(str(tmp_path / "nope.gguf"))
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x01\x02\x03")
    with pytest.raises(tz.Error, match="bad.bin"):
        tz.Model.load(str(bad))
    m = tz.Model.load(model, tokenizer=tok)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        m.logits([1, 5000])
    with pytest.raises(tz.Error):
        tz.Model.load(model, weights="q9", tokenizer=tok)
    with pytest.raises(ValueError, match=r"\.tz"):
        tz.compress(model, str(tmp_path / "out.gguf"))


def test_same_results_as_the_cli(models, tmp_path):
    """Model.perplexity / generate against `tensorzip eval` / `tensorzip run` on the same files."""
    import json
    import subprocess

    cli = os.environ.get("TENSORZIP_CLI")
    if not cli or not os.path.exists(cli):
        pytest.skip("TENSORZIP_CLI (the tensorzip binary) not set")
    model, tok, _ = paths(models)
    with open(os.path.join(models, "eval-text", "tinystories_valid_head.txt")) as f:
        text = f.read()[:4000]
    text_file = tmp_path / "t.txt"
    text_file.write_text(text)
    m = tz.Model.load(model, weights="q4", tokenizer=tok)
    ev = json.loads(subprocess.run([cli, "eval", "-m", model, "-z", tok, "-f", str(text_file), "--weights", "q4", "--json"],
                                   check=True, capture_output=True, text=True).stdout)
    ours = m.perplexity(text)
    assert ours["tokens"] == ev["tokens_scored"]
    assert abs(ours["perplexity"] - ev["perplexity"]) < 1e-9 * ev["perplexity"]
    run = json.loads(subprocess.run([cli, "run", "-m", model, "-z", tok, "-p", "The cat", "-n", "30", "--temp", "0", "--weights", "q4", "--json"],
                                    check=True, capture_output=True, text=True).stdout)
    assert m.generate("The cat", max_tokens=30, temperature=0) == run["text"]


def test_streaming_and_chat(models):
    model, tok, _ = paths(models)
    m = tz.Model.load(model, tokenizer=tok)
    whole = m.generate("Lily and Ben", max_tokens=60, temperature=0)
    pieces = list(m.generate("Lily and Ben", max_tokens=60, temperature=0, stream=True))
    assert len(pieces) > 10 and "".join(pieces) == whole
    stop = whole[20:24]
    cut = m.generate("Lily and Ben", max_tokens=60, temperature=0, stop=[stop])
    assert cut == whole[: whole.index(stop)]
    assert "".join(m.generate("Lily and Ben", max_tokens=60, temperature=0, stop=[stop], stream=True)) == cut
    seeded = [m.generate("Once", max_tokens=30, temperature=1.0, seed=7) for _ in range(2)]
    assert seeded[0] == seeded[1]
    with pytest.raises(ValueError, match="no chat template"):
        m.chat([{"role": "user", "content": "Hi"}])
    with pytest.raises(ValueError, match="role"):
        m.chat([{"role": "robot", "content": "Hi"}], template="chatml")
    reply = m.chat([{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Tell a story."}], template="chatml",
                   max_tokens=40, temperature=0)
    assert isinstance(reply, str) and reply == "".join(
        m.chat([{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Tell a story."}], template="chatml",
               max_tokens=40, temperature=0, stream=True))


def test_chat_matches_the_cli(models):
    import json
    import subprocess

    cli = os.environ.get("TENSORZIP_CLI")
    if not cli or not os.path.exists(cli):
        pytest.skip("TENSORZIP_CLI (the tensorzip binary) not set")
    model, tok, _ = paths(models)
    m = tz.Model.load(model, tokenizer=tok)
    run = json.loads(subprocess.run([cli, "run", "-m", model, "-z", tok, "--chat", "--chat-template", "llama2", "--system", "Be kind.",
                                     "-p", "Tell a story.", "-n", "40", "--temp", "0", "--json"], check=True, capture_output=True, text=True).stdout)
    ours = m.chat([{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Tell a story."}], template="llama2",
                  max_tokens=40, temperature=0)
    assert ours == run["text"]
