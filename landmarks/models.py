"""Model builders: pure functions from a spec to an uncompiled keras.Model."""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers


@dataclass(frozen=True)
class ModelSpec:
    name: str = "original_cnn"
    image_size: int = 128
    conv_blocks: int = 3
    first_filters: int = 32
    kernel_size: int = 3
    activation: str = "leaky_relu"
    leaky_alpha: float = 0.01
    dropout: float = 0.25
    dense_units: int = 256


def _activation(spec: ModelSpec) -> layers.Layer:
    if spec.activation == "leaky_relu":
        return layers.LeakyReLU(negative_slope=spec.leaky_alpha)
    if spec.activation in ("relu", "elu"):
        return layers.Activation(spec.activation)
    raise ValueError(f"unknown activation {spec.activation!r}")


def original_cnn(spec: ModelSpec, num_classes: int) -> keras.Model:
    """The original project's Sequential CNN: [Conv2D -> activation -> MaxPool 2x2 -> Dropout]
    blocks with filters doubling from ``first_filters``, then Flatten -> Dense -> activation ->
    Dropout -> Dense softmax. Inputs are RGB in [0, 255]."""
    model = keras.Sequential(name="original_cnn")
    model.add(keras.Input(shape=(spec.image_size, spec.image_size, 3)))
    model.add(layers.Rescaling(1.0 / 255))
    for block in range(spec.conv_blocks):
        model.add(
            layers.Conv2D(
                spec.first_filters * 2**block,
                (spec.kernel_size, spec.kernel_size),
                padding="same",
            )
        )
        model.add(_activation(spec))
        model.add(layers.MaxPooling2D((2, 2)))
        if spec.dropout:
            model.add(layers.Dropout(spec.dropout))
    model.add(layers.Flatten())
    model.add(layers.Dense(spec.dense_units))
    model.add(_activation(spec))
    if spec.dropout:
        model.add(layers.Dropout(min(0.5, spec.dropout * 2)))
    model.add(layers.Dense(num_classes, activation="softmax"))
    return model


BUILDERS = {"original_cnn": original_cnn}


def make_model(spec: ModelSpec, num_classes: int) -> keras.Model:
    try:
        builder = BUILDERS[spec.name]
    except KeyError:
        raise ValueError(f"unknown model {spec.name!r}; choose one of {sorted(BUILDERS)}") from None
    return builder(spec, num_classes)
