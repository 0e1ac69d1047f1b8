"""Unreadable files raise the project's own errors, naming the file and, for JSONL, the line (issue 11, item 5)."""

import gzip

import pandas as pd
import pytest

from causal_router.data.loaders import read_frame
from causal_router.errors import CausalRouterError, MissingFileError, UnreadableFileError
from causal_router.validation.loaders import load_logs

GOOD = "prompt_id,prompt,model,score,cost\np0,hi,m-a,1,0.1\np1,yo,m-b,0,0.2\n"


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


UNREADABLE = {
    "empty file": ("logs.parquet", b"", UnreadableFileError, "is empty"),
    "empty csv": ("logs.csv", b"", UnreadableFileError, "is empty"),
    "blank csv": ("logs.csv", b"\n\n", UnreadableFileError, "no columns"),
    "unknown extension": ("logs.txt", GOOD.encode(), UnreadableFileError, "unsupported file format"),
    "garbage parquet": ("logs.parquet", b"\x00\x01not parquet at all" * 10, UnreadableFileError,
                        "not a readable .parquet file"),
    "non-utf8 csv": ("logs.csv", GOOD.replace("hi", "caf\xe9").encode("latin-1"), UnreadableFileError,
                     "not UTF-8"),
    "ragged csv": ("logs.csv", (GOOD + "p2,x,m-a,1,0.1,extra,more\n").encode(), UnreadableFileError,
                   "line 4"),
    "broken jsonl line": ("logs.jsonl", b'{"prompt_id": "p0"}\n{"prompt_id": "p1"}\n{"prompt_id": \n',
                          UnreadableFileError, "line 3"),
    "jsonl line not an object": ("logs.jsonl", b'{"prompt_id": "p0"}\n[1, 2]\n', UnreadableFileError, "line 2"),
    "non-utf8 jsonl": ("logs.jsonl", '{"prompt": "caf\xe9"}\n'.encode("latin-1"), UnreadableFileError,
                       "line 1 is not UTF-8"),
    "blank jsonl": ("logs.jsonl", b"\n  \n", UnreadableFileError, "no records"),
    "garbage gzip": ("logs.csv.gz", b"not gzip", UnreadableFileError, "not a readable .csv.gz file"),
    "garbage pickle": ("logs.pkl", b"garbage", UnreadableFileError, "not a readable .pkl file"),
    "json not records": ("logs.json", b'"just a string"', UnreadableFileError, "not a readable .json file"),
}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_unreadable_file_is_named(tmp_path, case):
    name, data, error, needle = UNREADABLE[case]
    path = _write(tmp_path / name, data)
    with pytest.raises(error) as info:
        read_frame(path)
    assert needle in str(info.value) and str(path) in str(info.value)
    assert isinstance(info.value, CausalRouterError) and isinstance(info.value, ValueError)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(MissingFileError, match="no such file"):
        read_frame(tmp_path / "nope.parquet")
    with pytest.raises(MissingFileError, match="is a directory"):
        read_frame(tmp_path)
    assert issubclass(MissingFileError, FileNotFoundError)


def test_valid_but_odd_text_is_accepted(tmp_path):
    """A BOM, emoji, right-to-left text, control characters and a very long prompt are kept as they are."""
    prompts = ["emoji 😀🚀", "مرحبا بالعالم", "tab\tand\x07bell", "x" * 200_000]
    df = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(4)], "prompt": prompts,
                       "model": ["m-a", "m-b", "m-a", "m-b"], "score": [1.0, 0.0, 0.5, 0.5],
                       "cost": [0.1, 0.2, 0.1, 0.2]})
    csv = tmp_path / "bom.csv"
    csv.write_bytes(b"\xef\xbb\xbf" + df.to_csv(index=False).encode("utf-8"))
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + df.to_json(orient="records", lines=True, force_ascii=False).encode())
    for path in (csv, jsonl):
        loaded = load_logs(path)
        assert list(loaded.columns[:5]) == list(df.columns)  # the BOM is not glued to 'prompt_id'
        assert loaded["prompt"].tolist() == prompts


def test_jsonl_gz_round_trip(tmp_path):
    path = tmp_path / "l.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write('{"prompt_id": "p0", "score": 1}\n\n{"prompt_id": "p1", "score": 0}\n')
    assert read_frame(path)["prompt_id"].tolist() == ["p0", "p1"]
