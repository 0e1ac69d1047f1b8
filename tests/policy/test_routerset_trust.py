"""Router folders are pickles (issue 28, item 13): the payload's sha256 is recorded when saved and
checked before unpickling; a folder without one needs --trust."""

import json
import os
import pickle

import pytest
from typer.testing import CliRunner

from causal_router.cli import app
from causal_router.policy.routerset import MANIFEST, PAYLOAD, RouterSet, UntrustedArtifactError
from tests.serving.tiny import routerset


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_payload_is_never_unpickled(tmp_path):
    d = routerset(1).save(tmp_path / "set")
    assert json.loads((d / MANIFEST).read_text())["payload_sha256"]
    assert RouterSet.load(d, trust=False).models  # a saved set loads as before
    marker = tmp_path / "pwned"
    (d / PAYLOAD).write_bytes(pickle.dumps(_Evil(marker)))
    out = CliRunner().invoke(app, ["route", str(d), "hello", "--lam", "1"])
    assert out.exit_code == 1 and "does not match the sha256" in out.output and not marker.exists()
    with pytest.raises(UntrustedArtifactError):
        RouterSet.load(d)  # even the pipeline's own loads check a recorded hash
    manifest = json.loads((d / MANIFEST).read_text())
    del manifest["payload_sha256"]  # a folder from before the hash, or one whose manifest was rewritten
    (d / MANIFEST).write_text(json.dumps(manifest))
    out = CliRunner().invoke(app, ["route", str(d), "hello", "--lam", "1"])
    assert out.exit_code == 1 and "--trust" in out.output and not marker.exists()
