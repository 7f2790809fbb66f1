"""Every `lopt` command and flag of the installed lopt packages explains itself."""

from __future__ import annotations

import argparse

import pytest

from lopt_core import cli


def _parsers(parser: argparse.ArgumentParser, path: str = "lopt"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


PARSERS = dict(_parsers(cli.build_parser()))


def test_every_lopt_package_adds_its_commands():
    for command in ("list", "describe", "meta-train", "eval", "data prepare", "convert"):
        assert any(path.startswith(f"lopt {command}") for path in PARSERS), command


@pytest.mark.parametrize("path", sorted(PARSERS))
def test_every_flag_has_help_text_and_its_default_in_the_help(path):
    parser = PARSERS[path]
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"{path}: {name} has no help"
        entry = " ".join(parser._get_formatter()._format_action(action).split())
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            shown = (
                "(default: "
                if isinstance(action.default, list | tuple)
                else (f"(default: {action.default})")
            )
            assert shown in entry, f"{path}: {name} hides its default: {entry}"
        for option in action.option_strings:
            assert option in text, f"{path}: {option} missing from --help"


def test_meta_train_help_explains_weights_augmentations_and_the_member_normalizer():
    text = " ".join(PARSERS["lopt meta-train"].format_help().split())
    assert "--task-family NAME[:WEIGHT][,...]" in text
    assert "optional weights after a colon (A:2,B:1; default 1 each)" in text
    assert "--augment NAME[:KEY=VALUE,...]" in text
    assert "ReparamWeights:level=tensor,min_scale=0.01" in text and "applied in order" in text
    assert "--member-normalizer {relative,task}" in text
    assert "RelativeLossNormalizerFamily" in text and "(default: relative)" in text
    assert "a run from flags saves the recipe its flags make" in text
