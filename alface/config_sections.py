"""The frozen dataclass of each config section (``labels:``, ``backbone:``, ... ``privacy:``);
:class:`alface.config.Config` holds one of each. Every value's rule is in
:mod:`alface.config_rules`; the reasons for the grouping defaults (``tracks:``,
``duplicates:``) are in :mod:`alface.faces.tracks` and :mod:`alface.faces.duplicates`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class LabelsConfig:
    """The label set people choose from."""

    name: str = "race"
    classes: tuple[str, ...] = ("White", "Black", "Asian", "Indian", "Others")

    def __post_init__(self) -> None:
        from alface.classes import UNUSABLE
        from alface.config import ConfigError

        if any(c.strip().casefold() == UNUSABLE for c in self.classes):
            raise ConfigError(
                f"labels.classes: {UNUSABLE!r} is an answer of its own (a face that cannot be "
                "labeled), not a class name; rename that class"
            )


@dataclass(frozen=True)
class BackboneConfig:
    """A timm model; its input size and normalisation are the model's unless overridden here."""

    name: str = "resnet18"
    input_size: int | None = None  # None: the model's (timm's pretrained config)
    mean: tuple[float, float, float] | None = None  # None: the model's
    std: tuple[float, float, float] | None = None  # None: the model's
    pretrained: bool = True
    weights: str | None = None  # a local weights file; used instead of the hub when set
    drop_rate: float = 0.0


@dataclass(frozen=True)
class DeviceConfig:
    """Where torch and FAISS run: 'auto' picks the GPU when there is one."""

    torch: str = "auto"  # auto | cpu | cuda | cuda:N
    faiss: Literal["auto", "cpu", "gpu"] = "auto"


@dataclass(frozen=True)
class PreprocessConfig:
    """Face detection (MTCNN) and cropping."""

    crop_size: int = 160
    margin: float = 0.2
    min_face_size: int = 40  # source px; smaller faces give blurry crops and slow MTCNN
    min_prob: float = 0.9
    batch_size: int = 16
    workers: int = 2
    max_megapixels: float = 50.0
    detect_max_side: int = 1024
    every_n_frames: int = 30
    jpeg_quality: int = 95


@dataclass(frozen=True)
class AugmentConfig:
    """Train-time augmentation, applied to whole batches."""

    hflip: bool = True
    crop_scale: float = 0.85
    brightness: float = 0.1
    contrast: float = 0.1


@dataclass(frozen=True)
class DataConfig:
    """Splits, loaders and the crop cache."""

    image_size: int | None = None  # None: backbone.input_size, else the model's default
    batch_size: int = 64
    num_workers: int = 0
    cache: bool = True
    val_fraction: float = 0.15
    overfit_size: int = 200
    itval_size: int = 200
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class TrainerConfig:
    """Lightning Trainer settings for scale-out (see docs/SCALING.md)."""

    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"  # auto: 16-mixed on GPU, 32 on CPU


@dataclass(frozen=True)
class TrainConfig:
    """How the classifier is trained each iteration."""

    mode: Literal["finetune", "linear_probe"] = "finetune"
    max_epochs: int = 10
    min_epochs: int = 1
    lr: float = 1e-4
    head_lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 3
    monitor: str = "val/macro_f1"
    class_balance: Literal["none", "weights", "sampler"] = "weights"
    warm_start: bool = False
    head: Literal["lightning", "logreg"] = "lightning"  # how a linear probe's head is fitted
    head_cs: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
    head_folds: int = 5
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


@dataclass(frozen=True)
class SelectConfig:
    """Which faces to label next."""

    strategy: str = "entropy_diversity"  # a name in alface.select.list_strategies()
    uncertainty: str = "entropy"  # entropy | least_confidence | margin | ratio
    batch_size: int = 100
    top_m: float = 0.1  # <= 1: a fraction of the pool; > 1: a count
    pca_dims: int = 50
    pca_sample: int = 20000  # PCA is fitted on at most this many rows; 0: all
    n_clusters: int = 10
    kmeans_iters: int = 20
    kmeans_points_per_centroid: int = 256  # k-means trains on a sample of k x this; 0: all
    kmeans_init: Literal["k-means++", "random"] = "k-means++"
    kmeans_redo: int = 3  # k-means runs from different seedings; the lowest objective is kept
    near: float = 0.4
    far: float = 0.4
    random: float = 0.2
    score_batch_size: int = 256  # images per forward pass when the model scores the pool
    uncertainty_chunk: int = 262144  # rows of probabilities per uncertainty chunk
    max_per_group: int = 1  # faces of one person group (track, near-duplicates) per batch


@dataclass(frozen=True)
class LoopConfig:
    """Stop rules of the inner and outer loops."""

    metric: str = "macro_f1"
    overfit_tolerance: float = 0.02
    improve_threshold: float = 0.0
    target_metric: str = "macro_f1"
    target_value: float = 0.9
    target_set: Literal["itval", "overfit", "val"] = "itval"
    max_iterations: int = 20
    max_rounds: int = 10
    initial_size: int = 200  # the first batch (random) when nothing is labeled yet
    stop_rule: Literal["seed", "stabilizing", "kappa_average", "uncertainty"] = "seed"
    stop_kappa: float = 0.9  # stabilizing / kappa_average (chosen on digits: docs/BENCHMARKS.md)
    stop_window: int = 3  # ... over this many iterations
    stop_uncertainty: float = 0.05  # uncertainty: mean normalised entropy of the stop set


@dataclass(frozen=True)
class AnnotateConfig:
    """Exports, imports and label quality checks."""

    pair_fraction: float = 0.1
    kappa_warning: float = 0.6
    drift_warning: float = 0.25
    guidelines: str | None = None
    sheet_thumb: int = 96
    show_guess: bool = True  # the labeling page shows the model's guess (select batches)
    show_guess_pairs: bool = False  # ... also on faces sent to two annotators
    show_guess_itval: bool = False  # ... also on the iteration-validation set


@dataclass(frozen=True)
class DatasetConfig:
    """A folder of images with known labels (benchmarks, the oracle, the demo)."""

    root: str | None = None  # relative paths resolve against the current directory
    labels_csv: str | None = None  # columns path,label; paths relative to root or the CSV
    parser: str | None = None  # a file-name parser: utkface_race, utkface_gender, ...
    builtin: str | None = None  # digits | lfw_subset: written into root first (no download)
    cropped: bool = True  # the images are face crops already: no detection


@dataclass(frozen=True)
class BenchmarkConfig:
    """AL vs random learning curves."""

    strategies: tuple[str, ...] = ("random", "entropy", "entropy_diversity")
    initial: int = 100
    step: int = 100
    budget: int = 1500
    test_fraction: float = 0.3
    seeds: int = 5
    metric: str = "macro_f1"  # the test-split metric the curves and the summary use
    targets: tuple[float, ...] = (0.95, 1.0)  # shares of random's final metric to reach
    ceiling_target: float = 0.98  # share of the whole-pool model's metric (the ceiling) to reach
    low_budget: tuple[float, float] = (50.0, 500.0)  # label range of the low-budget AUC
    loop_pools: int = 2  # --mode loop: the selectable pool dealt into this many rounds' pools
    stop_rules: tuple[str, ...] = ("seed", "stabilizing", "kappa_average", "uncertainty")


@dataclass(frozen=True)
class PrivacyConfig:
    """Faces are biometric data (docs/PRIVACY.md): how long they are kept."""

    retention_days: float | None = None  # faces added longer ago expire (alface forget --expired)


@dataclass(frozen=True)
class TrackConfig:
    """How faces of sampled video frames are linked into tracks (``tracks:``); the reasons
    for each default are in :mod:`alface.faces.tracks`."""

    max_gap: int = 2  # sampled frames a face may be missed and its track go on
    max_jump: float = 3.0  # centre move per sample, in face sizes (sqrt of the box area)
    max_scale: float = 2.0  # largest ratio of the two faces' sizes
    min_similarity: float = 0.5  # embeddings' cosine below which two faces never link
    appearance_weight: float = 0.5  # share of the embedding term in the cost (with embeddings)
    cut_threshold: float = 0.5  # frame_signature distance that marks a shot cut, in [0, 1]
    propagate: bool = False  # a label on one face of a track proposed for the rest of it


@dataclass(frozen=True)
class DuplicateConfig:
    """When two faces are near-duplicates (``duplicates:``); the defaults' measurements are
    in :mod:`alface.faces.duplicates`. ``min_cosine`` is for the latest scoring's embeddings,
    i.e. the configured backbone's (set for O-Net trunk features; 1.0: no embedding links)."""

    hash: str = "phash"  # phash | dhash, stored per crop by preprocess (dhash links more)
    max_distance: int = 4  # hash bits that may differ; -1: no hash links
    min_cosine: float = 0.97  # embeddings' cosine for a link (for O-Net trunk features)
    neighbours: int = 10  # nearest neighbours searched per face for embedding links
