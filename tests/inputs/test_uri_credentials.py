"""Issue 12, item 10: credentials written into a URI are refused with one line.

Before, `--weights s3://KEY:SECRET@bucket/w.pt` reached `OUT/_job.json` and the Ray Jobs API
entrypoint (shown on the dashboard). Now no `JobSpec` can hold such a URI, on any route.
"""

from __future__ import annotations

import pytest

from maskray.jobs.spec import JobSpec
from maskray.jobs.uri_credentials import has_credentials, redacted
from maskray.errors import UsageError
from results_helpers import run_maskray

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzEXAMPLEKEY"  # the shape of an AWS secret: it holds a '/'


@pytest.mark.parametrize("uri", [
    f"s3://AKIAEXAMPLE:{SECRET}@bucket/w.pt",
    f"s3://AKIAEXAMPLE:{SECRET.replace('/', '%2F')}@bucket/w.pt",
    "gs://oauth2accesstoken@bucket/w.pt",
    "https://user:pass@models.example.com/w.pt",
    f"s3://bucket/w.pt?access_key=AKIAEXAMPLE&secret_key={SECRET}",
    "https://bucket.s3.amazonaws.com/w.pt?X-Amz-Credential=AKIA&X-Amz-Signature=abc123",
])
def test_uris_with_credentials_are_recognised_and_redacted(uri):
    assert has_credentials(uri)
    shown = redacted(uri)
    assert SECRET not in shown and "AKIAEXAMPLE" not in shown and "pass" not in shown and "abc123" not in shown


@pytest.mark.parametrize("uri", ["s3://bucket/cams/", "s3://bucket/people/me@home.jpg", "gs://bucket/x.mp4",
                                 "/data/me@host/frames", "s3://bucket/x?region=eu-west-1", "file:///tmp/out"])
def test_ordinary_uris_and_paths_pass(uri):
    assert not has_credentials(uri)


@pytest.mark.parametrize("field", ["sources", "output", "weights"])
def test_no_job_spec_can_hold_credentials(field, tmp_path):
    values = dict(sources=[str(tmp_path)], output=str(tmp_path / "out"), weights="none")
    uri = f"s3://AKIAEXAMPLE:{SECRET}@bucket/key"
    values[field] = [uri] if field == "sources" else uri
    with pytest.raises(UsageError, match="credentials in the URI") as refused:
        JobSpec(**values)
    assert SECRET not in str(refused.value) and "AKIAEXAMPLE" not in str(refused.value)


@pytest.mark.parametrize("where", [
    ["--weights", f"s3://AKIAEXAMPLE:{SECRET}@bucket/w.pt"],
    ["--output", f"s3://AKIAEXAMPLE:{SECRET}@bucket/masks/"],
])
@pytest.mark.parametrize("address", [[], ["--address", "http://127.0.0.1:9"]])  # local, and the Jobs API
def test_submit_refuses_them_with_one_line_and_writes_nothing(where, address, data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["submit", data_dir / "images", "--output", out, "--weights", "none", *where, *address]
    code, text, err = run_maskray(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("maskray: error: ")
    assert "credentials in the URI" in err and "***@bucket" in err
    assert SECRET not in err + text and "AKIAEXAMPLE" not in err + text
    assert not out.exists()
