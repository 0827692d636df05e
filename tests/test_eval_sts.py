"""STS evaluation: Spearman by hand, the three layouts, malformed files, the CLI."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import DATA

from llm2vec_rag.cli.main import cli
from llm2vec_rag.evaluation.sts import (
    STSDataError,
    evaluate_sts,
    load_sts,
    pearson,
    rankdata,
    spearman,
)


def test_rankdata_averages_ties():
    assert rankdata([10, 20, 20, 30]).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert rankdata([3, 1, 3, 3]).tolist() == [3.0, 1.0, 3.0, 3.0]


def test_spearman_hand_computed_with_ties():
    # ranks of y: [1, 2, 3.5, 5, 3.5]; deviations from 3: x [-2,-1,0,1,2], y [-2,-1,.5,2,.5]
    # sum(dx*dy) = 8, sum(dx^2) = 10, sum(dy^2) = 9.5  ->  rho = 8 / sqrt(95)
    rho = spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])
    assert rho == pytest.approx(8 / math.sqrt(95), abs=1e-12)
    assert spearman([1, 2, 3], [10, 200, 3000]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert pearson([1, 2, 3], [2, 4, 6.5]) == pytest.approx(np.corrcoef([1, 2, 3], [2, 4, 6.5])[0, 1])


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_layouts_are_detected(tmp_path):
    stsb = tmp_path / "stsb"
    _write(stsb / "sts-test.csv", "g\tf\t2012\t1\t4.0\tA cat sits.\tA cat is sitting.\n"
                                  "g\tf\t2012\t2\t0.5\tA dog runs.\tThe sky is blue.\textra\tcolumns\n")
    data = load_sts(stsb, "test")
    assert data.name == "stsb" and data.pairs() == 2
    assert data.groups["stsb"][0].scores.tolist() == [4.0, 0.5]
    assert data.groups["stsb"][0].s2[1] == "The sky is blue."

    sick = tmp_path / "sick"
    _write(sick / "SICK_test_annotated.txt", "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n"
                                             "1\tA man eats.\tA person eats.\t4.5\tENTAILMENT\n")
    assert load_sts(sick, "test").groups["sick-r"][0].scores.tolist() == [4.5]
    with pytest.raises(STSDataError, match="SICK splits"):
        load_sts(sick, "dev")

    sts = tmp_path / "sts12-16"
    _write(sts / "2012" / "MSRpar.test.tsv", "3.2\tA b c.\tA b d.\n\tno gold here\tskipped\n1.0\tX.\tY.\n")
    _write(sts / "2012" / "OnWN.test.tsv", "5\tSame.\tSame.\n")
    _write(sts / "2013" / "FNWN.test.tsv", "2\tP.\tQ.\n")
    data = load_sts(sts, "test")
    assert list(data.groups) == ["sts12", "sts13"]
    assert [s.name for s in data.groups["sts12"]] == ["MSRpar", "OnWN"]
    assert data.groups["sts12"][0].scores.tolist() == [3.2, 1.0]  # the line without gold is skipped
    assert load_sts(sts / "2013").name == "sts13"


@pytest.mark.parametrize("name,content,line", [
    ("sts-test.csv", "g\tf\t2012\t1\t4.0\tA.\tB.\ng\tf\t2012\t2\tfour\tA.\tB.\n", 2),
    ("sts-test.csv", "g\tf\t2012\t1\t4.0\tA.\tB.\ng\tf\t2012\tonly five\n", 2),
])
def test_malformed_lines_name_file_and_line(tmp_path, name, content, line):
    _write(tmp_path / "stsb" / name, content)
    with pytest.raises(STSDataError, match=rf"sts-test.csv:{line}:"):
        load_sts(tmp_path / "stsb", "test")


class _FixedEncoder:
    """Vectors at known angles: cosine(s1, s2) is exactly the number in s2."""

    name = "fixed"

    def encode(self, items, batch_size=32, show_progress_bar=False, normalize_embeddings=True):
        out = []
        for item in items:
            text = item if isinstance(item, str) else item[1]
            if text.startswith("ref"):
                out.append([1.0, 0.0])
            else:
                c = float(text)
                out.append([c, math.sqrt(max(0.0, 1 - c * c))])
        return np.asarray(out)


def test_evaluate_sts_scores_cosine_against_gold(tmp_path):
    sims = [0.9, 0.1, 0.5, 0.7, 0.3]
    gold = [5.0, 1.0, 2.0, 4.0, 3.0]
    lines = "".join(f"g\tf\t2012\t{i}\t{g}\tref{i}\t{s}\n" for i, (s, g) in enumerate(zip(sims, gold)))
    _write(tmp_path / "stsb" / "sts-dev.csv", lines)
    result = evaluate_sts(_FixedEncoder(), load_sts(tmp_path / "stsb", "dev"))
    assert result["spearman"] == pytest.approx(round(spearman(sims, gold), 5))
    assert result["spearman"] == pytest.approx(0.9)  # ranks (5,1,3,4,2) vs (5,1,2,4,3): 1 - 6*2/120
    assert result["pairs"] == 5


def test_cli_eval_sts_json(tmp_path, tiny_model_dir):
    rows = ["A cat sits on the mat.\tA cat is on the mat.\t4.5", "Rivers carry sediment.\tJet engines push air.\t0.2",
            "Cells make energy.\tMitochondria power cells.\t3.0", "Wings give lift.\tAircraft wings make lift.\t4.0"]
    _write(tmp_path / "sick" / "SICK_test_annotated.txt",
           "pair_ID\tsentence_A\tsentence_B\trelatedness_score\n"
           + "".join(f"{i}\t{r.split(chr(9))[0]}\t{r.split(chr(9))[1]}\t{r.split(chr(9))[2]}\n" for i, r in enumerate(rows)))
    result = CliRunner().invoke(cli, ["eval", "sts", str(tmp_path / "sick"), "--model", str(tiny_model_dir),
                                      "--dtype", "float32", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["dataset"] == "sick-r" and out["pairs"] == 4 and -1.0 <= out["spearman"] <= 1.0
    bad = CliRunner().invoke(cli, ["eval", "sts", str(tmp_path / "sick"), "--split", "dev",
                                   "--model", str(tiny_model_dir)])
    assert bad.exit_code == 1 and "error:" in bad.output and "SICK splits" in bad.output


@pytest.mark.skipif(not (DATA / "stsb").is_dir(), reason="shared STS data not present")
def test_real_sts_files_load_with_published_counts():
    assert load_sts(DATA / "stsb", "test").pairs() == 1379
    assert load_sts(DATA / "stsb", "dev").pairs() == 1500
    assert load_sts(DATA / "sick", "test").pairs() == 4927
    sts = load_sts(DATA / "sts12-16", "test")
    assert list(sts.groups) == ["sts12", "sts13", "sts14", "sts15", "sts16"]
    assert all(s.scores.min() >= 0 and s.scores.max() <= 5 for sets in sts.groups.values() for s in sets)
