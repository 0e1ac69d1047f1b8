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


@pytest.mark.parametrize("command", ["route", "evaluate", "calibrate"])
def test_every_command_that_says_pass_trust_takes_it(command):
    # the refusal tells the user to pass --trust: each command that loads a folder must accept it
    out = CliRunner().invoke(app, [command, "--help"])
    assert out.exit_code == 0 and "--trust" in out.output


def test_calibrate_loads_an_unhashed_folder_with_trust(tmp_path):
    d = routerset(1).save(tmp_path / "set")
    manifest = json.loads((d / MANIFEST).read_text())
    del manifest["payload_sha256"]
    (d / MANIFEST).write_text(json.dumps(manifest))
    args = ["calibrate", str(d), "--logs", str(tmp_path / "missing.parquet"), "--budget", "0.001"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1 and "--trust" in refused.output
    trusted = CliRunner().invoke(app, [*args, "--trust"])
    # past the folder: the loaded set's encoder is what the error names now
    assert trusted.exit_code == 1 and "was trained on features of encoder 'tiny-d4'" in trusted.output
