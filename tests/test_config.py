from pathlib import Path

import pytest

from glovefaiss.config import Config, load_config
from glovefaiss.errors import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_default_config_file_equals_builtin_defaults():
    assert load_config(CONFIGS / "default_config.yml") == Config()


def test_glove_search_extends_default():
    cfg = load_config(CONFIGS / "glove_search.yml")
    assert cfg.loss.margin == 0.3
    assert cfg.embedding.type == "glove" and cfg.embedding.trainable is False
    assert cfg.tokeniser.max_len == 128
    # Keys it does not set come from default_config.yml.
    assert cfg.build == Config().build
    assert cfg.optimizer.type == "adam"


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "c.yml"
    p.write_text("extends: {}\nembedding:\n  dimm: 3\n".format(CONFIGS / "default_config.yml"))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == (
        f"{p}: unknown key 'embedding.dimm'; valid keys here: type, model_name, dim, trainable"
    )


def test_unknown_top_level_key(tmp_path):
    p = tmp_path / "c.yml"
    p.write_text("epochz: 3\n")
    with pytest.raises(ConfigError, match="unknown key 'epochz'"):
        load_config(p)


def config_error(path: Path, text: str) -> str:
    """The message of the ConfigError that loading ``text``, written to ``path``, raises."""
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return str(e.value)


def test_wrong_type_is_named(tmp_path):
    p = tmp_path / "c.yml"
    assert config_error(p, "tokeniser:\n  lowercase: 'yes'\n") == f"{p}: 'tokeniser.lowercase' must be bool, got 'yes'"


def test_extends_loop_and_missing_file(tmp_path):
    a, b = tmp_path / "a.yml", tmp_path / "b.yml"
    a.write_text("extends: b.yml\n")
    b.write_text("extends: a.yml\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(a)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yml")
    c = tmp_path / "c.yml"
    c.write_text("extends: default_config.yml\n")
    with pytest.raises(ConfigError) as e:
        load_config(c)
    assert str(e.value) == (f"config file not found: {tmp_path / 'default_config.yml'} (named by 'extends' in {c}; "
                            "copy it beside that file or correct the name)")


def test_yaml_errors_name_the_line(tmp_path):
    p = tmp_path / "bad.yml"
    p.write_text("loss:\n  type: cosine\n  spread: 3: 4\n")
    with pytest.raises(ConfigError, match=f"^{p}:3: not valid YAML \\(mapping values are not allowed here\\)$"):
        load_config(p)


def test_overrides_ignore_none_and_validate():
    cfg = Config().replace({"build.batch_size": 7, "build.id_column": None, "embedding.model_name": "x"})
    assert cfg.build.batch_size == 7 and cfg.build.id_column == "id" and cfg.embedding.model_name == "x"
    with pytest.raises(ConfigError, match="'build.batch_size' must be int"):
        Config().replace({"build.batch_size": "many"})


def test_int_accepted_for_float():
    assert Config().replace({"loss.margin": 1}).loss.margin == 1.0


def test_numbers_out_of_range_are_refused(tmp_path):
    p = tmp_path / "c.yml"
    assert config_error(p, "build:\n  target_recall: 5\n") == f"{p}: 'build.target_recall' must be between 0 and 1, got 5.0"
    assert config_error(p, "build:\n  batch_size: 0\n") == f"{p}: 'build.batch_size' must be at least 1, got 0"
    assert config_error(p, "tokeniser:\n  max_len: -5\n") == f"{p}: 'tokeniser.max_len' must be at least 1, got -5"
    assert config_error(p, "tokeniser:\n  max_len: 0\n") == f"{p}: 'tokeniser.max_len' must be at least 1, got 0"
    assert load_config(CONFIGS / "default_config.yml").build.target_recall == 0.95
