"""Every ```zql example in docs/language.md runs, in order, against a fresh hub."""
import re

import pytest

from conftest import ROOT

DOCS = ["language.md"]


def _examples(name):
    text = (ROOT / "docs" / name).read_text()
    return re.findall(r"```zql\n(.*?)```", text, flags=re.S)


def _fixtures(folder):
    import torch

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    torch.jit.script(net).save(str(folder / "digits.pt"))
    (folder / "digit_labels.txt").write_text("\n".join(str(i) for i in range(10)) + "\n")
    (folder / "finetunes.csv").write_text(
        "name,source,tree,parent,downloads,license\n"
        "llama3-math,hf:org/llama3-math,llama-3-8b,llama3,5400,mit\n"
        "llama3-chat,hf:org/llama3-chat,llama-3-8b,llama3,120,\n")
    (folder / "leaderboard.csv").write_text(
        "model,dataset,metric,score\nllama3,gsm8k,acc,0.55\nllama3-math,gsm8k,acc,0.71\n"
        "llama3-chat,gsm8k,acc,0.49\nllama3,mmlu,acc,0.66\n")
    (folder / "outcomes.csv").write_text(
        "model,dataset,query_id,score\n" + "".join(
            f"{m},gsm8k,q{i},{(i + k) % 2}\n" for k, m in enumerate(["llama3", "llama3-math"]) for i in range(4)))


@pytest.mark.parametrize("doc", DOCS)
def test_doc_examples_run(doc, tmp_path):
    import zooql

    _fixtures(tmp_path)
    hub = zooql.connect(tmp_path / "hub")
    blocks = _examples(doc)
    assert blocks, f"no examples in {doc}"
    for block in blocks:
        res = hub.execute(block, base_dir=str(tmp_path))
        assert res is not None
    # spot checks that the examples did what the text says
    names = {r[0] for r in hub.execute("SHOW MODELS")}
    assert {"digits_cnn", "llama3", "llama3-math", "llama3-chat"} <= names and "tiny_resnet" not in names
    assert dict(hub.execute("DESCRIBE DATASET gsm8k").rows)["outcomes"] == "8"


def test_select_examples_do_what_the_text_says(tmp_path):
    """The SELECT section's examples (run above) on the same fixtures, with their results."""
    import zooql

    _fixtures(tmp_path)
    hub = zooql.connect(tmp_path / "hub")
    for block in _examples("language.md"):
        hub.execute(block, base_dir=str(tmp_path))
    res = hub.execute("SELECT name, downloads FROM models WHERE tree = 'llama-3-8b' ORDER BY downloads DESC LIMIT 3")
    assert [r[0] for r in res] == ["llama3", "llama3-math", "llama3-chat"]
    assert hub.execute("SELECT model, root, depth FROM trees WHERE model = 'llama3-math'").rows == [
        ("llama3-math", "llama3", 1)]
    res = hub.execute("SELECT g.model FROM (DISCOVER BEST 1 IN TREE llama-3-8b ON gsm8k BUDGET 4 "
                      "WHERE name <> 'llama3-chat') g")
    assert len(res) == 1 and res.rows[0][0] in ("llama3", "llama3-math")
    import pyarrow.parquet as pq

    assert sorted(pq.read_table(tmp_path / "trees.parquet").column("name").to_pylist()) == \
        ["digits_cnn", "llama3", "llama3-chat", "llama3-math"]
    assert (tmp_path / "trees.csv").read_text().startswith("tree,models,roots")
