"""Models trained from scratch. Inputs are raw uint8 RGB; scaling and augmentation live
inside the model, so training, validation and prediction cannot disagree about them.

`config` is the run's kit.config.Config, read for its model settings (models sit below the config,
which checks its values against them, so they take it without importing it)."""

from __future__ import annotations

from kit.errors import KitError


def conv_blocks_for(size: int, max_blocks: int = 4, min_out: int = 5) -> int:
    """How many conv3x3 + maxpool2 blocks fit: seed 003 used 4 at 150 px (ending at 7x7)."""
    blocks, side = 0, size
    while blocks < max_blocks and (side - 2) // 2 >= min_out:
        side = (side - 2) // 2
        blocks += 1
    return max(blocks, 1)


def augmentation(seed: int, flip: bool = True):
    """Random mirror (where the task allows it: `flip`), rotation, zoom and shift."""
    import keras

    mirror = [keras.layers.RandomFlip("horizontal", seed=seed)] if flip else []
    return keras.Sequential([
        *mirror,
        keras.layers.RandomRotation(0.08, seed=seed),
        keras.layers.RandomZoom(0.15, seed=seed),
        keras.layers.RandomTranslation(0.1, 0.1, seed=seed),
    ], name="augment")


def baseline_cnn(config, n_classes: int = 2):
    """Seed 003's network (conv 32-64-128-128, dense 512, the task's top), scaled to the input size."""
    import keras
    from keras import layers

    from kit.models import outputs

    inputs = keras.Input((config.image_size, config.image_size, 3), dtype="uint8", name="image")
    x = layers.Rescaling(1.0 / 255)(inputs)
    if config.augment:
        x = augmentation(config.seed, config.flip)(x)
    for block in range(conv_blocks_for(config.image_size)):
        x = layers.Conv2D(config.width * min(2 ** block, 4), 3, activation="relu", name=f"conv{block + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{block + 1}")(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(config.dropout)(x)
    x = layers.Dense(config.dense, activation="relu")(x)
    model = keras.Model(inputs, outputs.top(n_classes)(x), name="baseline_cnn")
    model.compile(optimizer=keras.optimizers.RMSprop(config.learning_rate),
                  loss=outputs.loss(n_classes), metrics=["accuracy"])
    return model


MODELS = {"baseline-cnn": baseline_cnn}


def build(config, n_classes: int = 2):
    if config.model not in MODELS:
        raise KitError(f"unknown model {config.model!r}; choose one of: {', '.join(sorted(MODELS))}")
    return MODELS[config.model](config, n_classes)
