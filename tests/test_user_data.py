"""User data files: loading, and bad input rejected with a message naming the row."""

import numpy as np
import pytest

from bib_ray.alphabets import DNA, PROTEIN
from bib_ray.errors import UserError
from bib_ray.tasks import load_task


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_loads_and_merges_exact_duplicates(tmp_path):
    path = write(tmp_path, "d.csv", "sequence,score\nACGT,1.0\nacgg,2\nACGT,1.0\nTTTT,-0.5\n")
    task = load_task(str(path))
    assert task.alphabet == DNA and task.oracle is None and task.length == 4
    assert task.sequences() == ["ACGT", "ACGG", "TTTT"]
    np.testing.assert_allclose(task.y, [1.0, 2.0, -0.5])
    assert task.details["merged_exact_duplicates"] == 1


def test_tsv_with_other_column_names_and_protein(tmp_path):
    path = write(tmp_path, "d.tsv", "id\tseq\tfitness\na\tMKV\t0.1\nb\tMKW\t0.3\n")
    task = load_task(f"user:{path}")
    assert task.alphabet == PROTEIN and task.sequences() == ["MKV", "MKW"]


def test_fasta_scores_from_headers(tmp_path):
    path = write(tmp_path, "d.fasta", ">a score=1.5\nACG\nT\n>b|2.5\nAAAA\n>c 3\nCCCC\n")
    task = load_task(str(path))
    assert task.sequences() == ["ACGT", "AAAA", "CCCC"]
    np.testing.assert_allclose(task.y, [1.5, 2.5, 3.0])


@pytest.mark.parametrize("name,text,message", [
    ("d.csv", "sequence,score\nACGT,1\nACG,2\n", r"row 2 \(line 3\): length 3 differs"),
    ("d.csv", "sequence,score\nACGT,1\nACXT,2\n", r"row 2 \(line 3\): letter\(s\) \['X'\] not in alphabet"),
    ("d.csv", "sequence,score\nACGT,1\nACGA,nan\n", r"row 2 \(line 3\): score is 'nan'"),
    ("d.csv", "sequence,score\nACGT,1\nACGA,\n", r"row 2 \(line 3\): score '' is not a number"),
    ("d.csv", "sequence,score\nACGT,1\nCCCC,2\nACGT,3\n",
     r"row 1 \(line 2\) and row 3 \(line 4\) have the same sequence ACGT with different scores 1.0 and 3.0"),
    ("d.csv", "name,score\nACGT,1\n", "no sequence column"),
    ("d.csv", "sequence,score\nACGT,1\n", "at least 2 distinct"),
    ("d.fasta", ">a score=1\nACGT\n>b\nACGA\n", r"record 2 \(b\): no score in header"),
    ("d.fasta", "ACGT\n>a 1\nACGT\n", "line 1: sequence before the first"),
    ("d.xlsx", "whatever", "unknown file type"),
])
def test_bad_files_name_the_row(tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    with pytest.raises(UserError, match=message):
        load_task(f"user:{path}")


def test_explicit_alphabet_is_enforced(tmp_path):
    path = write(tmp_path, "d.csv", "sequence,score\nACGT,1\nACGA,2\n")
    assert load_task(f"user:{path}", alphabet="protein").alphabet == PROTEIN
    with pytest.raises(UserError, match=r"letter\(s\) \['T'\] not in alphabet 'ACG'"):
        load_task(f"user:{path}", alphabet="ACG")
    with pytest.raises(UserError, match="does not exist"):
        load_task(f"user:{tmp_path / 'missing.csv'}")
