"""Command-line flags are made from the settings models: one flag per field, help and default from the field."""

from __future__ import annotations

import pytest

from bib_ray.cli import build_parser, main
from bib_ray.distributed.settings import RaySettings
from bib_ray.flags import flag_of, model_flag_values
from bib_ray.run.config import DesignConfig, build_config
from bib_ray.service.settings import ServiceSettings


def options(command: str) -> dict:
    """flag -> argparse action of a subcommand."""
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    return {flag: action for action in commands.choices[command]._actions for flag in action.option_strings}


@pytest.mark.parametrize("command, models", [("design", (DesignConfig, RaySettings)), ("sweep", (RaySettings,)),
                                             ("serve", (ServiceSettings,))])
def test_every_settings_field_is_a_flag_with_its_description_and_default(command, models):
    flags = options(command)
    for model in models:
        for name, field in model.model_fields.items():
            if name == "artifact":  # serve's positional argument
                continue
            action = flags[flag_of(name, field)]
            assert action.dest == name and field.description in action.help
            default = field.get_default(call_default_factory=True)
            if default not in (None, False):
                assert "(default" in action.help, name


def test_old_flag_names_stay():
    assert {"--placement-timeout", "--batch-wait-timeout", "--trust-remote-code", "--seeds"} <= \
        set(options("design")) | set(options("serve"))


def test_given_flags_override_the_yaml_and_unset_ones_leave_it(tmp_path, capsys):
    args = build_parser().parse_args(["design", "--lr", "0.3", "--seeds", "0-2", "--observed-letters-only"])
    given = model_flag_values(args, DesignConfig)
    assert given == {"lr": 0.3, "seeds": "0-2", "observed_letters_only": True}
    assert build_config(given).seeds == [0, 1, 2]
    config = tmp_path / "run.yaml"
    config.write_text("lr: 0.05\ndesigns: 7\nmax_mutations: 0\n")
    assert main(["design", "--config", str(config), "--lr", "0.3", "--local", "--out", str(tmp_path / "o")]) == 2
    assert "max_mutations: Input should be greater than or equal to 1" in capsys.readouterr().err
