"""The one set of redaction rules (``hf_transfer.redact``) that every saved or published file goes through."""

from __future__ import annotations

import pytest

from hf_transfer import redact

TOKEN = "hf_" + "abcdefghijklmnopqrstuvwxyz0123"


@pytest.mark.parametrize("key, secret", [
    ("hub_token", True), ("--hub_token", True), ("--hub-token", True), ("token", True), ("db_password", True),
    ("client_secret", True), ("token_dropout", False), ("token_level", False), ("tokenizer", False),
    ("include_num_input_tokens_seen", False), ("learning_rate", False),
])
def test_a_key_is_secret_when_its_last_word_is_a_secret_word(key, secret):
    assert redact.is_secret(key) is secret


def test_tokens_of_twenty_characters_or_more_are_caught():
    assert redact.has_token("x hf_" + "a" * 20) and not redact.has_token("hf_" + "a" * 19) and not redact.has_token("hf_transfer")


def test_publishable_config_drops_secrets_hides_tokens_and_shortens_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    values = {"hub_token": TOKEN, "run_name": f"run-{TOKEN}", "train_file": str(tmp_path / "data"), "token_dropout": 0.1,
              "tasks": [f"a={tmp_path / 'data'}", "b=/elsewhere/alice/b"], "model": "/home/alice/models/tiny", "seed": 3}
    kept = redact.publishable_config(values, tmp_path / "runs" / "out")
    assert kept == {"run_name": "***", "train_file": "data", "token_dropout": 0.1, "tasks": ["a=data", "b=b"],
                    "model": "tiny", "seed": 3, "output_dir": "runs/out"}
    assert "output_dir" not in redact.publishable_config({"seed": 3})


def test_command_line_hides_every_secret_option_and_keeps_settings():
    command = redact.command_line(["prog", "--password", "pw", "--token_dropout", "0.1", "--client_secret=abc", "--x", "/home/alice/f"],
                                  program="hf-transfer pretrain")
    assert command == "hf-transfer pretrain --password *** --token_dropout 0.1 '--client_secret=***' --x f"
