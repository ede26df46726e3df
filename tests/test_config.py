import json

import pytest

from kit import COMPETITION, config
from kit.config import parse_overrides, resolve
from kit.errors import KitError


def test_defaults_are_the_competition_and_clip():
    cfg = config.resolve()
    assert cfg.competition == "dogs-vs-cats-redux-kernels-edition"
    assert (cfg.clip_low, cfg.clip_high) == (0.005, 0.995)


@pytest.mark.parametrize("preset", sorted(config.PRESETS))
def test_every_preset_is_the_defaults_with_its_own_keys_changed(preset):
    layer = config.PRESETS[preset]
    resolved = config.resolve(preset).to_dict()
    defaults = config.Config().to_dict()
    assert {key: resolved[key] for key in layer} == layer, "every key the preset sets is applied"
    changed = {key for key in defaults if resolved[key] != defaults[key]}
    assert changed <= set(layer), f"keys the preset does not name changed: {sorted(changed - set(layer))}"
    assert config.Config(**resolved) == config.resolve(preset), "the saved form reads back as the same config"


def test_overrides_are_typed_from_the_field():
    cfg = config.resolve("demo", config.parse_overrides(["epochs=3", "augment=false", "clip_low=0.01"]))
    assert (cfg.epochs, cfg.augment, cfg.clip_low) == (3, False, 0.01)


@pytest.mark.parametrize("pairs, message", [
    (["epoch=3"], "unknown config key 'epoch'"),
    (["epochs=three"], "expected int"),
    (["augment=maybe"], "expected true or false"),
    (["epochs"], "key=value"),
])
def test_bad_overrides_are_refused(pairs, message):
    with pytest.raises(KitError, match=message):
        config.parse_overrides(pairs)


def test_unknown_preset_lists_choices():
    with pytest.raises(KitError, match="choose one of: .*baseline"):
        config.resolve("gpu-fast")


def test_wrong_type_in_config_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"epochs": "10"}))
    with pytest.raises(KitError, match="epochs must be int"):
        config.resolve(config_file=str(path))


def test_unknown_key_in_config_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"learning_rat": 0.1}))
    with pytest.raises(KitError, match="unknown config key 'learning_rat'.*valid keys"):
        config.resolve(config_file=str(path))


def test_clip_bounds_must_straddle_one_half():
    with pytest.raises(KitError, match="clip_low"):
        config.resolve(overrides={"clip_low": 0.6})


def test_int_is_accepted_for_float_but_bool_is_not_int():
    # 1 == 1.0 holds for an int too: the type is what the conversion changes.
    rate = config.resolve(overrides={"learning_rate": 1}).learning_rate
    assert type(rate) is float and rate == 1.0
    with pytest.raises(KitError, match="epochs must be int"):
        config.resolve(overrides={"epochs": True})


def test_saved_config_round_trips(tmp_path):
    cfg = config.resolve("cpu")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert config.load_saved(path) == cfg


@pytest.mark.parametrize("key, value, message", [
    ("augment_scale", -0.5, "augment_scale must be 0 or more, got -0.5"),
    ("label_noise_c", 0.0, "label_noise_c must be above 0, got 0.0"),
])
def test_settings_out_of_range_are_one_line(key, value, message):
    with pytest.raises(KitError, match=message):
        config.Config(**{key: value})


def test_augment_scale_scales_every_range_but_the_mirror():
    from kit.data.generators import Augment

    half = Augment().scaled(0.5)
    assert half.flip and half.rotation == Augment().rotation / 2 and half.noise == Augment().noise / 2
    assert Augment().scaled(1.0) == Augment()    # the default trains exactly as before the setting existed
    assert all(getattr(Augment().scaled(0.0), name) == 0 for name in ("rotation", "shift", "zoom", "noise", "gamma"))


def test_another_competitions_paths_follow_its_slug_unless_set():
    redux = resolve("cpu")
    assert (redux.data_dir, redux.runs_dir, redux.submissions_dir, redux.cache_dir, redux.pixel_cache_dir) == (
        "data/" + COMPETITION, "runs", "submissions", "cache/features", "cache/pixels")
    assert resolve("cpu", {"competition": COMPETITION}) == redux
    other = resolve("cpu", {"competition": "plant-seedlings-classification"})
    paths = (other.data_dir, other.runs_dir, other.submissions_dir, other.cache_dir, other.pixel_cache_dir)
    assert paths == ("data/plant-seedlings-classification", "runs/plant-seedlings-classification",
                     "submissions/plant-seedlings-classification", "cache/features/plant-seedlings-classification",
                     "cache/pixels/plant-seedlings-classification")
    mine = resolve("demo", {"competition": "plant-seedlings-classification", "runs_dir": "elsewhere"})
    assert (mine.runs_dir, mine.data_dir) == ("elsewhere", "data/demo")   # set by the user, by the preset


def test_task_overrides_are_the_task_keys_set():
    assert resolve("cpu").task_overrides() == {}
    config = resolve("cpu", parse_overrides(["metric=f1_macro", "label_column=breed", "flip=false"]))
    assert config.task_overrides() == {"metric": "f1_macro", "label_column": "breed"}
    assert config.flip is False
