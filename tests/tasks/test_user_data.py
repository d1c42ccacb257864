"""User data files: loading, and bad input rejected with a message naming the row."""

import gzip

import numpy as np
import pytest

from bib_ray.alphabets import DNA, PROTEIN, RNA
from bib_ray.cli import main
from bib_ray.errors import UserError
from bib_ray.tasks import Task, UserDataOptions, load_task
from bib_ray.tasks.user_data import describe_alphabet, read_sequences


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
    assert task.details["merged_rows"] == 1 and task.details["replicated_sequences"] == 1


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
    assert load_task(f"user:{path}", user=UserDataOptions(alphabet="protein")).alphabet == PROTEIN
    with pytest.raises(UserError, match=r"letter\(s\) \['T'\] not in alphabet 'ACG'"):
        load_task(f"user:{path}", user=UserDataOptions(alphabet="ACG"))
    with pytest.raises(UserError, match="does not exist"):
        load_task(f"user:{tmp_path / 'missing.csv'}")


GOOD_CSV = "sequence,score\nACGT,1\nACGA,2\n"
GOOD_FASTA = ">a 1\nACGT\n>b 2\nACGA\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10"
# (file name, bytes, message fragment): files that are not usable text, for both readers
NOT_TEXT = [
    ("d.csv", b"", r"d.csv: the file is empty \(0 bytes\); it needs a header row naming the columns"),
    ("d.csv", b"  \n\n \t\n", "holds only whitespace; it needs a header row"),
    ("d.csv", "sequence,score,note\nACGT,1,caf\u00e9\n".encode("latin-1"),
     r"line 2: byte 0xe9 is not UTF-8: .*Latin-1.*save it as UTF-8 text"),
    ("d.csv", GOOD_CSV.encode("utf-16"), "the file is UTF-16 text, not UTF-8 text; save it as UTF-8"),
    ("d.csv", GOOD_CSV.encode("utf-16-le"), "line 1 has a NUL byte: the file is binary"),
    ("d.csv", gzip.compress(GOOD_CSV.encode()), r"gzip-compressed, not UTF-8 text; decompress it first \(gunzip\)"),
    ("d.csv", b"PK\x03\x04\x14\x00\x06\x00", r"a ZIP archive \(an Excel .xlsx workbook\?\)"),
    ("d.csv", PNG, "the file is a PNG image"),
    ("d.csv", b"sequence,score\nACGT,1\nAC\x00A,2\n", "line 3 has a NUL byte"),
    ("d.fasta", b"", r"d.fasta: the file is empty \(0 bytes\); it needs records of a '>name score=1.5' header"),
    ("d.fasta", b"\n \n", "holds only whitespace; it needs records"),
    ("d.fasta", ">a caf\u00e9 1\nACGT\n".encode("latin-1"), "line 1: byte 0xe9 is not UTF-8"),
    ("d.fasta", GOOD_FASTA.encode("utf-16"), "the file is UTF-16 text"),
    ("d.fasta", gzip.compress(GOOD_FASTA.encode()), "gzip-compressed"),
    ("d.fasta", b">a 1\nAC\x00T\n", "line 2 has a NUL byte"),
]


def write_bytes(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def assert_refused_everywhere(path, message):
    """Both readers of user files (a design task and `bib-ray score`'s sequence list) refuse ``path``."""
    with pytest.raises(UserError, match=message):
        load_task(f"user:{path}")
    with pytest.raises(UserError, match=message):
        read_sequences(path)


@pytest.mark.parametrize("name,data,message", NOT_TEXT)
def test_files_that_are_not_utf8_text_are_user_errors(tmp_path, name, data, message):
    assert_refused_everywhere(write_bytes(tmp_path, name, data), message)


@pytest.mark.parametrize("name,text,message", [
    ("d.csv", "sequence,score\n", r"no sequences found: the header row \(sequence,score\) has no data rows"),
    ("d.csv", "ACGT,1.5\nACGA,2.0\n", r"first line \['ACGT', '1.5'\] looks like data, not a header; the file "
     r"needs a header row naming the columns, with the sequence column one of \['sequence', 'seq', "
     r"'mutated_sequence', 'variant'\] and the score column one of \['score', 'y', 'fitness', 'label', 'value', "
     r"'dms_score'\]"),
    ("d.tsv", "ACGT\t1.5\nACGA\t2.0\n", "looks like data, not a header"),
])
def test_missing_header_or_rows(tmp_path, name, text, message):
    assert_refused_everywhere(write(tmp_path, name, text), message)


def test_read_sequences_refuses_empty_sequences(tmp_path):
    with pytest.raises(UserError, match=r"record 1 \(a\): empty sequence"):
        read_sequences(write(tmp_path, "d.fasta", ">a\n>b\nACGT\n"))
    with pytest.raises(UserError, match=r"row 2 \(line 3\): empty sequence"):
        read_sequences(write(tmp_path, "d.csv", "sequence,name\nACGT,a\n,b\n"))


@pytest.mark.parametrize("name,text", [("d.csv", GOOD_CSV), ("d.fasta", GOOD_FASTA)])
def test_utf8_byte_order_mark_is_accepted(tmp_path, name, text):
    path = write_bytes(tmp_path, name, b"\xef\xbb\xbf" + text.encode())
    assert load_task(f"user:{path}").sequences() == ["ACGT", "ACGA"]
    assert read_sequences(path) == ["ACGT", "ACGA"]


def dna_rows(n, length=8, seed=0):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list(DNA), length)) for _ in range(n)]


def test_nearly_dna_with_odd_rows_is_refused_naming_them(tmp_path):
    rows = dna_rows(30)
    rows[3] = "ACGEACGT"
    path = write(tmp_path, "d.csv", "sequence,score\n" + "".join(f"{s},{i}\n" for i, s in enumerate(rows)))
    with pytest.raises(UserError, match=r"looks like DNA \(99.6% of the letters are nucleotides\) but 1 of 30 rows "
                       r"has other letters: row 4 \(line 5\) has \['E'\]; fix those rows, or choose the alphabet: "
                       r"--alphabet protein if the file really is protein, or --alphabet ACGTE"):
        load_task(f"user:{path}")
    task = load_task(f"user:{path}", user=UserDataOptions(alphabet="protein"))
    assert task.alphabet == PROTEIN and task.details["alphabet_source"] == "given"
    assert describe_alphabet(task) == f"alphabet protein ({PROTEIN}), given (--alphabet)"


def test_nearly_dna_refusal_names_the_first_rows_and_counts_the_rest(tmp_path):
    rows = dna_rows(40, length=20)
    for i in range(0, 40, 5):  # every fifth row has an N: 80% of rows, 99.0% of letters are ACGT
        rows[i] = "N" + rows[i][1:]
    path = write(tmp_path, "d.fasta", "".join(f">s{i} {i}\n{s}\n" for i, s in enumerate(rows)))
    with pytest.raises(UserError, match=r"8 of 40 rows have other letters: record 1 \(s0\) has \['N'\]; "
                       r"record 6 \(s5\) has .* and 3 more; .*--alphabet ACGTN \(DNA plus N\)"):
        load_task(f"user:{path}")
    assert load_task(f"user:{path}", user=UserDataOptions(alphabet="ACGTN")).details["alphabet"] == "ACGTN"


def test_one_protein_row_among_dna_rows_is_refused(tmp_path):
    rows = dna_rows(10)
    rows[9] = "MKWLLPRS"  # 10% of the letters are not nucleotides, but 90% of the rows are pure DNA
    path = write(tmp_path, "d.csv", "sequence,score\n" + "".join(f"{s},{i}\n" for i, s in enumerate(rows)))
    with pytest.raises(UserError, match=r"1 of 10 rows has other letters: row 10 \(line 11\) has \['K', 'L'"):
        load_task(f"user:{path}")


def test_protein_and_rna_are_detected_and_reported(tmp_path):
    protein = write(tmp_path, "p.csv", "sequence,score\nMKVLAGT,1\nMKWLAGT,0.5\nMRVLSGT,0.2\nACGTACG,0.1\n")
    task = load_task(f"user:{protein}")
    assert task.alphabet == PROTEIN
    assert (task.details["alphabet"], task.details["alphabet_source"]) == ("protein", "detected")
    assert describe_alphabet(task) == f"alphabet protein ({PROTEIN}), detected from the data"
    assert describe_alphabet(task.details) == describe_alphabet(task)
    rna = load_task(str(write(tmp_path, "r.fasta", ">a 1\nACGU\n>b 2\nUUGA\n")))
    assert rna.alphabet == RNA and describe_alphabet(rna) == "alphabet rna (ACGU), detected from the data"
    dna = load_task(str(write(tmp_path, "d.csv", GOOD_CSV)))
    assert describe_alphabet(dna) == "alphabet dna (ACGT), detected from the data"
    benchmark = Task(name="t", alphabet=PROTEIN[:8], x=np.zeros((1, 3)), y=np.zeros(1))
    assert describe_alphabet(benchmark) == "alphabet ACDEFGHI, set by the task"


def test_cli_prints_one_error_line_for_an_empty_file(tmp_path, capsys):
    path = write_bytes(tmp_path, "d.csv", b"")
    assert main(["design", "--task", f"user:{path}", "--local", "--steps", "2", "--designs", "4",
                 "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"bib-ray: error: {path}: the file is empty (0 bytes)")


REPLICATES = "sequence,score\nACGT,1\nCCCC,2\nACGT,3\nACGT,8\nGGGG,0\n"


@pytest.mark.parametrize("mode, expected", [("mean", 4.0), ("median", 3.0), ("max", 8.0)])
def test_replicates_are_merged_as_asked(tmp_path, mode, expected):
    from bib_ray.tasks import UserDataOptions
    from bib_ray.tasks.user_data import describe_replicates

    task = load_task(str(write(tmp_path, "d.csv", REPLICATES)), user=UserDataOptions(duplicates=mode))
    assert task.sequences() == ["ACGT", "CCCC", "GGGG"]
    np.testing.assert_allclose(task.y, [expected, 2.0, 0.0])
    assert describe_replicates(task) == ("1 sequence was measured more than once (3 rows): merged by the "
                                         f"{mode} of their scores (--duplicates mean|median|max|error)")


def test_replicates_refused_in_error_mode_name_the_rows_and_the_option(tmp_path):
    from bib_ray.tasks import UserDataOptions

    with pytest.raises(UserError, match=r"row 1 \(line 2\) and row 3 \(line 4\) have the same sequence ACGT with "
                                        r"different scores 1.0 and 3.0; to merge replicate measurements pass "
                                        r"--duplicates mean, median or max"):
        load_task(str(write(tmp_path, "d.csv", REPLICATES)), user=UserDataOptions(duplicates="error"))


PROTEINGYM = "mutant,mutated_sequence,DMS_score\nA1C,CKLMW,0.5\nK2R:L3A,ARAMW,1.0\nM4W,AKLWW,-0.2\n"


def test_proteingym_files_give_their_wild_type(tmp_path):
    task = load_task(str(write(tmp_path, "pg.csv", PROTEINGYM)))
    assert task.details["wild_type"] == "AKLMW" and task.details["wild_type_source"] == "the mutant column"
    assert task.sequences(task.reference[None]) == ["AKLMW"] and task.mutation_radius == 2
    assert task.mutations(task.x, task.x) == ["A1C", "K2R:L3A", "M4W"]


def test_mutants_alone_need_the_wild_type(tmp_path):
    from bib_ray.tasks import UserDataOptions

    path = write(tmp_path, "m.csv", "mutant,score\nA1C,0.5\nK2R:L3A,1.0\nWT,0.1\n")
    with pytest.raises(UserError, match="no sequence column: give the wild type"):
        load_task(str(path))
    task = load_task(str(path), user=UserDataOptions(wild_type="AKLMW", alphabet="protein"))
    assert task.sequences() == ["CKLMW", "ARAMW", "AKLMW"]


@pytest.mark.parametrize("text, message", [
    ("mutant,score\nA1C,1\nK9R,2\n", r"row 2 \(line 3\): mutation K9R: position 9 is outside the wild type"),
    ("mutant,score\nA1C,1\nL2R,2\n", r"row 2 \(line 3\): mutation L2R: position 2 of the wild type is K, not L"),
    ("mutant,score\nA1C,1\nK2,2\n", r"row 2 \(line 3\): mutation 'K2' is not like A23G"),
    ("mutant,score\nA1C,1\nK2B,2\n", r"row 2 \(line 3\): letter\(s\) \['B'\] not in alphabet"),
    ("mutant,mutated_sequence,score\nA1C,CKLMW,1\nK2R,AKLMW,2\n",
     r"row 2 \(line 3\): mutation K2R: the mutated sequence has K at position 2, not R"),
    ("mutant,mutated_sequence,score\nA1C,CKLMW,1\nK2R,ARLMA,2\n",
     r"row 2 \(line 3\): mutant 'K2R' does not account for its sequence: position 5 is A"),
])
def test_bad_mutants_name_the_row(tmp_path, text, message):
    from bib_ray.tasks import UserDataOptions

    with pytest.raises(UserError, match=message):
        load_task(str(write(tmp_path, "m.csv", text)), user=UserDataOptions(wild_type="AKLMW"))
