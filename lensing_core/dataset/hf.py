"""The local dataset revision in Hugging Face Hub layout, its id, offline loading and the push.

Layout::

    hf_dataset/README.md                        dataset card: YAML configs + dataset_info
    hf_dataset/revision.json                    revision id and per-configuration content
    hf_dataset/data/lmax_{L}_{noise}/train-*.parquet, shards.json

The card and ``revision.json`` are written for shard sets already in place. The revision id is
derived from the content (the rows' hashes and the card), so the same rows and card give the
same id whatever the parquet bytes or the time. Loading works offline, with the Hub switched
off; the push is optional and needs a repository id and a token.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lensing_core.dataset.columns import (
    COLUMN_DESCRIPTIONS,
    COLUMN_DTYPES,
    CONFIG_NAMES,
    parse_config_name,
    tile_shape,
)
from lensing_core.io import write_json, write_text
from lensing_core.sky.noise import NOISE_CONVENTIONS, NOISE_LEVELS, noise_power
from lensing_core.sky.rotations import SCHEMES
from lensing_core.sky.summaries import scheme_summary
from lensing_core.sky.surveys import SURVEYS
from lensing_core.sky.tiles import TilingOptions
from lensing_core.storage import SPLIT, DataRoot, RevisionDir, ShardSet

if TYPE_CHECKING:
    from datasets import Dataset

    from lensing_core.dataset.parquet import ShardReport

logger = logging.getLogger(__name__)

#: Tag hashed into every revision id.
REVISION_ID_VERSION = "lensing-hf-revision/v1"
DEFAULT_PRETTY_NAME = "Weak-lensing convergence tiles for field-level inference"

_SCHEME_TEXT = {
    "belts": (
        "`belts`: orientation 0 is the identity, 1 a 90 degree rotation about the axis "
        "(1, 1, 0)/sqrt(2), 2 a 90 degree rotation about (1, -1, 0)/sqrt(2). Each rotation "
        "brings one ring of four polar base faces onto the equator, so the 12 tiles are "
        "almost disjoint."
    ),
    "legacy": (
        "`legacy`: the orientations of the earlier published dataset (healpy "
        '`Rotator(rot=(0, 90, 0))` and `Rotator(rot=(90, 0, 0))` with `eulertype="ZYZ"`, '
        "which healpy silently treats as ZYX). Its third orientation is a 90 degree turn "
        "about the z axis that merely relabels faces 4..7, so tiles duplicate each other; "
        "kept for comparison only."
    ),
}
_CONVENTION_TEXT = {
    "per_component": (
        "`per_component`: sigma_e is the shape noise per ellipticity component, the noise "
        "power is N_ell = sigma_e^2 / n_eff and the pixel standard deviation at the source "
        "resolution is sigma_e / sqrt(n_eff A_pix)."
    ),
    "legacy": (
        "`legacy`: N_ell = sigma_e^2 / (2 n_eff), pixel standard deviation "
        "sigma_e / sqrt(2 n_eff A_pix): half the correct variance, as in the earlier "
        "published dataset. Kept for comparison only."
    ),
}


@dataclass(frozen=True)
class RevisionInfo:
    """
    A local revision.

    Attributes
    ----------
    revision_id
        Content-derived id (see :func:`revision_id`).
    path
        The revision directory (``hf_dataset``).
    configs
        The shard sets listed in the card, by configuration name.
    scheme, noise_convention
        What the card describes.
    """

    revision_id: str
    path: Path
    configs: Mapping[str, ShardReport]
    scheme: str
    noise_convention: str

    @property
    def card_path(self) -> Path:
        """``README.md`` of the revision."""
        return RevisionDir(self.path).card

    @property
    def missing_configs(self) -> list[str]:
        """Configurations of the 15 that this revision does not hold."""
        return [name for name in CONFIG_NAMES if name not in self.configs]

    def to_record(self) -> dict[str, Any]:
        """``revision.json``: deterministic, no paths outside the revision."""
        return {
            "revision_id": self.revision_id,
            "revision_id_version": REVISION_ID_VERSION,
            "scheme": self.scheme,
            "noise_convention": self.noise_convention,
            "configs": {
                name: {
                    "rows": r.rows,
                    "n_sims": len(r.sims_included),
                    "content_hash": r.content_hash,
                    "shards": [f"{RevisionDir.DATA_DIR}/{name}/{s.name}" for s in r.shards],
                }
                for name, r in sorted(self.configs.items())
            },
        }

    def to_metadata(self) -> dict[str, Any]:
        """JSON-ready summary for asset metadata."""
        return {
            "revision_id": self.revision_id,
            "path": str(self.path),
            "scheme": self.scheme,
            "noise_convention": self.noise_convention,
            "configs": {
                name: {
                    "rows": r.rows,
                    "n_sims": len(r.sims_included),
                    "n_shards": len(r.shards),
                    "total_bytes": r.total_bytes,
                    "content_hash": r.content_hash,
                }
                for name, r in sorted(self.configs.items())
            },
            "missing_configs": self.missing_configs,
        }


@dataclass(frozen=True)
class HubTarget:
    """
    Where a revision is pushed: nothing is pushed without a repository id.

    Attributes
    ----------
    repo_id
        The Hub dataset repository, ``owner/name`` (``LENSING_HF_REPO_ID``).
    token_env
        The environment variable holding the token, read at push time by :meth:`token`;
        the token is never stored in settings, files, logs or metadata.
    """

    repo_id: str | None = None
    token_env: str = "HF_TOKEN"

    def token(self) -> str | None:
        """The token from the environment, if set."""
        return os.environ.get(self.token_env) or None


@dataclass(frozen=True)
class PushResult:
    """
    Outcome of :func:`push_revision`; never holds the token.

    Attributes
    ----------
    pushed
        Whether a commit was made on the Hub.
    reason
        Why not, or ``"pushed"``.
    repo_id
        Target dataset repository.
    commit_url
        URL of the commit, when pushed.
    """

    pushed: bool
    reason: str
    repo_id: str | None = None
    commit_url: str | None = None

    def to_metadata(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {
            "pushed": self.pushed,
            "reason": self.reason,
            "repo_id": self.repo_id,
            "commit_url": self.commit_url,
        }


def discover_configs(hf_dir: Path) -> dict[str, Path]:
    """``{config: directory}`` of every ``data/{config}/shards.json`` under *hf_dir*, sorted."""
    found = {}
    for manifest in sorted(RevisionDir(Path(hf_dir)).data.glob(f"*/{ShardSet.MANIFEST}")):
        name = manifest.parent.name
        if name in CONFIG_NAMES:
            found[name] = manifest.parent
    return dict(sorted(found.items(), key=lambda item: CONFIG_NAMES.index(item[0])))


def revision_id(content_hashes: Mapping[str, str], card_text: str) -> str:
    """
    Content-derived id of a revision.

    Parameters
    ----------
    content_hashes
        ``{config: content hash}`` of the shard sets.
    card_text
        The card rendered without an id (``revision_id=""``).

    Returns
    -------
        sha256 hex digest of ``{"version", "configs" (sorted), "card"}`` as canonical JSON:
        the same rows and card give the same id, whatever the parquet bytes or the time.
    """
    record = {
        "version": REVISION_ID_VERSION,
        "configs": dict(sorted(content_hashes.items())),
        "card": card_text,
    }
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def build_dataset_card(
    reports: Mapping[str, ShardReport],
    *,
    scheme: str,
    noise_convention: str,
    revision: str = "",
    pretty_name: str = DEFAULT_PRETTY_NAME,
    license_id: str | None = None,
    source: str | None = None,
) -> str:
    """
    The dataset card (``README.md``) of a revision.

    Parameters
    ----------
    reports
        Shard sets by configuration name.
    scheme
        Orientation scheme of the tiles (``"belts"`` or ``"legacy"``).
    noise_convention
        Noise convention of the tiles (``"per_component"`` or ``"legacy"``).
    revision
        Revision id written into the card; ``""`` for the text the id is computed from.
    pretty_name, license_id
        Card metadata (no ``license`` key when *license_id* is ``None``).
    source
        One line on where the kappa maps and parameters come from.

    Returns
    -------
        Markdown with YAML front matter: ``configs`` (``data_files`` per configuration, split
        ``train``) and ``dataset_info`` (features with ``kappa`` as ``Array3D``, row counts).
    """
    if scheme not in SCHEMES:
        msg = f"unknown orientation scheme {scheme!r}; expected one of {SCHEMES}"
        raise ValueError(msg)
    if noise_convention not in NOISE_CONVENTIONS:
        msg = f"unknown noise convention {noise_convention!r}; expected one of {NOISE_CONVENTIONS}"
        raise ValueError(msg)
    names = [name for name in CONFIG_NAMES if name in reports]
    front = {"pretty_name": pretty_name}
    if license_id is not None:
        front["license"] = license_id
    front_matter: dict[str, Any] = {
        **front,
        "tags": ["weak-lensing", "cosmology", "simulation-based-inference", "healpix"],
        "configs": [
            {
                "config_name": name,
                "data_files": [
                    {"split": SPLIT, "path": f"{RevisionDir.DATA_DIR}/{name}/{ShardSet.GLOB}"}
                ],
            }
            for name in names
        ],
        "dataset_info": _dataset_info_yaml(reports, names),
    }
    yaml_text = yaml.safe_dump(front_matter, sort_keys=False, default_flow_style=False, width=1000)
    body = _card_body(reports, names, scheme, noise_convention, revision, pretty_name, source)
    return f"---\n{yaml_text}---\n\n{body}"


def write_hf_revision(
    hf_dir: Path,
    configs: Mapping[str, ShardReport | Path] | None = None,
    *,
    tmp_root: Path,
    scheme: str,
    noise_convention: str,
    pretty_name: str = DEFAULT_PRETTY_NAME,
    license_id: str | None = None,
    source: str | None = None,
) -> RevisionInfo:
    """
    Write the card and ``revision.json`` of a revision whose shard sets are in place.

    Parameters
    ----------
    hf_dir
        The revision directory; each configuration's shards are in ``data/{config}/``.
    configs
        ``{config: ShardReport or shard directory}``; every configuration found under
        ``hf_dir/data`` if not given (:func:`discover_configs`).
    tmp_root
        Directory for temporaries on the same file system (``DataRoot.tmp_root``).
    scheme, noise_convention, pretty_name, license_id, source
        See :func:`build_dataset_card`.

    Returns
    -------
        The revision, with its content-derived id.

    Raises
    ------
    ValueError
        If no configuration is given or found, a configuration's shards are not in
        ``hf_dir/data/{config}``, differ from the report passed in or from their manifest,
        or record another scheme or noise convention than the card would describe.
    FileNotFoundError
        If a manifest or a shard is missing.

    Notes
    -----
    Each configuration is read back from its manifest (and its shard sizes checked), so the
    card describes what is on disk. ``README.md`` and ``revision.json`` are each written to a
    temporary file and renamed into place.
    """
    hf_dir = Path(hf_dir)
    if configs is None:
        configs = discover_configs(hf_dir)
    if not configs:
        msg = f"no configuration to describe under {RevisionDir(hf_dir).data}"
        raise ValueError(msg)
    reports = {
        name: _checked_report(hf_dir, name, item, scheme, noise_convention)
        for name, item in configs.items()
    }
    reports = {name: reports[name] for name in CONFIG_NAMES if name in reports}
    card_args: dict[str, Any] = {
        "scheme": scheme,
        "noise_convention": noise_convention,
        "pretty_name": pretty_name,
        "license_id": license_id,
        "source": source,
    }
    unsigned = build_dataset_card(reports, **card_args)
    rev = revision_id({n: r.content_hash for n, r in reports.items()}, unsigned)
    card = build_dataset_card(reports, revision=rev, **card_args)
    info = RevisionInfo(rev, hf_dir, reports, scheme, noise_convention)
    write_json(RevisionDir(hf_dir).record, info.to_record(), tmp_root=tmp_root, sort_keys=True)
    write_text(info.card_path, card, tmp_root=tmp_root)
    logger.info("revision %s of %s: %s", rev[:12], hf_dir, ", ".join(reports))
    return info


def load_local_config(
    path: Path, config: str, *, split: str = SPLIT, cache_dir: Path | None = None
) -> Dataset:
    """
    Load one configuration of a local revision with ``datasets``, with the Hub switched off.

    Parameters
    ----------
    path
        The revision directory (holding ``README.md``).
    config
        Configuration name, e.g. ``"lmax_600_des_y3"``.
    split
        Split to load.
    cache_dir
        ``datasets`` cache (Arrow copies of the shards); its default if not given.

    Returns
    -------
        ``datasets.Dataset`` whose ``kappa`` feature is ``Array3D((4, n, n), "float32")``;
        ``.with_format("numpy")`` gives ``kappa`` batches of shape ``(rows, 4, n, n)``.

    Raises
    ------
    FileNotFoundError
        If *path* is not a directory with a ``README.md`` (a bare name would otherwise be
        looked up on the Hub).

    Notes
    -----
    ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` are set (and ``datasets``' and
    ``huggingface_hub``'s cached flags patched) for the duration of the call, then restored;
    not safe to run concurrently with Hub access from other threads.
    """
    path = Path(path)
    if not RevisionDir(path).card.is_file():
        msg = f"{path} is not a local dataset revision (no README.md)"
        raise FileNotFoundError(msg)
    parse_config_name(config)
    import datasets

    with _hub_offline():
        return datasets.load_dataset(
            str(path),
            config,
            split=split,
            cache_dir=None if cache_dir is None else str(cache_dir),
        )


def push_revision(
    hf_dir: Path,
    *,
    repo_id: str | None,
    token: str | None,
    revision: str | None = None,
    private: bool | None = None,
) -> PushResult:
    """
    Upload a local revision to a Hub dataset repository, if a repo id and a token are given.

    Parameters
    ----------
    hf_dir
        The revision directory.
    repo_id
        ``owner/name`` of the dataset repository; nothing is attempted without it.
    token
        Hub token, read from the environment by the caller; nothing is attempted without
        it. It is passed to ``huggingface_hub`` only: never logged, stored or returned.
    revision
        Revision id for the commit message.
    private
        Visibility if the repository has to be created (the Hub's default if ``None``).

    Returns
    -------
        Whether it pushed, and why not.

    Raises
    ------
    RuntimeError
        If the Hub refuses; the message has the token redacted and no chained exception.
    """
    if not repo_id:
        return PushResult(False, "no Hub repo id configured; the local revision was not pushed")
    if not token:
        return PushResult(
            False, "no Hub token in the environment; the local revision was not pushed", repo_id
        )
    from huggingface_hub import HfApi

    message = f"lensing dataset revision {revision or 'unnamed'}"
    try:
        api = HfApi(token=token)
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(hf_dir),
            repo_id=repo_id,
            repo_type="dataset",
            commit_message=message,
            allow_patterns=[RevisionDir.CARD, RevisionDir.RECORD, f"{RevisionDir.DATA_DIR}/*/*"],
            delete_patterns=[f"{RevisionDir.DATA_DIR}/**"],  # shards of an earlier revision
        )
    except Exception as err:  # anything the Hub client raises; the token must not leak
        detail = _redact(f"{type(err).__name__}: {err}", token)
        msg = f"push of {hf_dir} to the Hub dataset {repo_id} failed: {detail}"
        raise RuntimeError(msg) from None
    url = _redact(str(getattr(commit, "commit_url", "") or ""), token) or None
    logger.info("pushed revision %s to %s", revision, repo_id)
    return PushResult(True, "pushed", repo_id, url)


@dataclass(frozen=True)
class PublishedRevision:
    """
    A revision written and, where set up, pushed (:func:`publish_revision`).

    Attributes
    ----------
    revision
        What was written.
    push
        Whether it was pushed, and why not.
    """

    revision: RevisionInfo
    push: PushResult

    def to_metadata(self) -> dict[str, Any]:
        """The revision id and directory, the rows per configuration, and the push."""
        return {
            "revision_id": self.revision.revision_id,
            "path": self.revision.path,
            "configs": {name: r.rows for name, r in self.revision.configs.items()},
            "missing_configs": self.revision.missing_configs,
            "push": self.push.to_metadata(),
        }


def publish_revision(root: DataRoot, tiling: TilingOptions, hub: HubTarget) -> PublishedRevision:
    """
    Write the revision of every configuration built under *root*, and push it if set up.

    Parameters
    ----------
    root
        The data root; the revision is ``root.hf_dataset``.
    tiling
        The scheme and noise convention the card describes (and the shards must have).
    hub
        Where to push; the token is read from the environment now, never kept.
    """
    revision = write_hf_revision(
        root.hf_dataset.dir,
        tmp_root=root.tmp_root,
        scheme=tiling.scheme,
        noise_convention=tiling.noise_convention,
    )
    pushed = push_revision(
        revision.path, repo_id=hub.repo_id, token=hub.token(), revision=revision.revision_id
    )
    return PublishedRevision(revision, pushed)


# --- helpers ------------------------------------------------------------------------------


def _checked_report(
    hf_dir: Path, name: str, item: ShardReport | Path, scheme: str, noise_convention: str
) -> ShardReport:
    """The on-disk report of one configuration, checked against *item* and the card."""
    # pyarrow and datasets: imported where used, so loading the code location stays light
    from lensing_core.dataset.parquet import ShardReport, read_shard_manifest

    parse_config_name(name)
    expected_dir = RevisionDir(hf_dir).shards(name).dir
    given_dir = item.out_dir if isinstance(item, ShardReport) else Path(item)
    if given_dir.resolve() != expected_dir.resolve():
        msg = f"{name}: shards are in {given_dir}, but the card points at {expected_dir}"
        raise ValueError(msg)
    report = read_shard_manifest(expected_dir)
    if report.config != name:
        msg = f"{expected_dir}: manifest is of configuration {report.config!r}, not {name!r}"
        raise ValueError(msg)
    if isinstance(item, ShardReport) and item.content_hash != report.content_hash:
        msg = f"{name}: shards on disk ({report.content_hash[:12]}) differ from the report given"
        raise ValueError(msg)
    for key, want in (("scheme", scheme), ("noise_convention", noise_convention)):
        seen = set(report.tile_provenance.get(key, ())) - {"unknown"}
        if seen - {want}:
            msg = f"{name}: tiles record {key} {sorted(seen)}, but the card would say {want!r}"
            raise ValueError(msg)
    return report


def _dataset_info_yaml(reports: Mapping[str, ShardReport], names: list[str]) -> list[Any]:
    """``dataset_info`` entries as ``datasets`` writes them (features, split row counts)."""
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCardData

    from lensing_core.dataset.schema import features

    infos = DatasetInfosDict(
        {
            name: DatasetInfo(
                features=features(reports[name].lmax),
                config_name=name,
                splits=SplitDict({SPLIT: SplitInfo(SPLIT, num_examples=reports[name].rows)}),
            )
            for name in names
        }
    )
    card_data = DatasetCardData()
    infos.to_dataset_card_data(card_data)
    entries = card_data.to_dict()["dataset_info"]
    return entries if isinstance(entries, list) else [entries]


def _card_body(
    reports: Mapping[str, ShardReport],
    names: list[str],
    scheme: str,
    noise_convention: str,
    revision: str,
    pretty_name: str,
    source: str | None,
) -> str:
    coverage = scheme_summary(scheme)
    example = names[0] if names else CONFIG_NAMES[0]
    lines = [
        f"# {pretty_name}",
        "",
        f"Revision id: `{revision or '(computed from the content)'}`",
        "",
        "Flat convergence (kappa) tiles cut from full-sky weak-lensing maps, one row per tile, "
        "with the cosmological parameters of the simulation, for field-level "
        "simulation-based inference. One configuration per band limit and noise level, "
        "named `lmax_{lmax}_{noise}`.",
        "",
    ]
    if source:
        lines += [f"Source: {source}", ""]
    lines += [
        "## Configurations",
        "",
        "| configuration | lmax | tile (bins, pixels, pixels) | noise | noise realisations "
        "| rows | sims | content sha256 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        r = reports[name]
        shape = " x ".join(map(str, tile_shape(r.lmax)))
        realizations = ", ".join(r.tile_provenance.get("noise_realizations", ())) or "1"
        lines.append(
            f"| `{name}` | {r.lmax} | {shape} | {r.noise_level} | {realizations} | {r.rows} | "
            f"{len(r.sims_included)} | `{r.content_hash}` |"
        )
    missing = [name for name in CONFIG_NAMES if name not in reports]
    if missing:
        lines += ["", "Not in this revision: " + ", ".join(f"`{n}`" for n in missing) + "."]
    lines += [
        "",
        "The content hash is the sha256 of the rows in order (ids, noise level, parameters "
        "and kappa in a fixed little-endian encoding); the revision id is the sha256 of the "
        "configurations' content hashes and this card without the id.",
        "",
        "## Columns",
        "",
        "| column | type | description |",
        "|---|---|---|",
    ]
    for column, text in COLUMN_DESCRIPTIONS.items():
        dtype = COLUMN_DTYPES[column]
        dtype = f"Array3D {dtype} (4, n, n)" if column == "kappa" else dtype
        lines.append(f"| `{column}` | {dtype} | {text} |")
    lines += [
        "",
        "Rows are ordered by (sim_id, noise_realization, orientation_id, tile_id). A tile is "
        "the square image of one equatorial HEALPix base face (4..7, as tile_id 0..3) of the "
        "rotated, band-limited map, resynthesised at nside = n.",
        "",
        "## Orientation scheme",
        "",
        _SCHEME_TEXT[scheme],
        "",
        f"The 12 tiles of a sim cover {100 * coverage['sky_coverage']:.1f}% of the sky; the "
        f"largest fraction of one tile also covered by another is "
        f"{100 * coverage['max_pairwise_overlap']:.1f}%, and "
        f"{coverage['duplicate_tile_pairs']} pairs of tiles are duplicates.",
        "",
        "## Noise model",
        "",
        "Shape noise is white at the source map resolution, band limited by the same harmonic "
        "filter as the signal. Each (sim, noise level) has R realisations (the table above), "
        "`noise_realization` r = 0 .. R-1, each drawn with its own seed from (sim, noise "
        "level, r) and shared by every lmax and orientation: the rows of one tile in its R "
        "realisations hold the same signal plus independent noise. Draw one realisation per "
        "tile and epoch when training, and keep realisation 0 for evaluation, so that no "
        "network learns one noise map by heart; never split the rows of one sim (or tile) "
        "between training and evaluation. Convention: " + _CONVENTION_TEXT[noise_convention],
        "",
        "| noise level | bin | n_eff (arcmin^-2) | sigma_e | N_ell (sr) | reference |",
        "|---|---|---|---|---|---|",
        "| noiseless | all | - | - | 0 | - |",
    ]
    for level in NOISE_LEVELS:
        if level == "noiseless":
            continue
        survey = SURVEYS[level]
        power = noise_power(level, convention=noise_convention)
        for b, (n_eff, sigma_e) in enumerate(
            zip(survey.n_eff_arcmin2, survey.sigma_e, strict=True)
        ):
            lines.append(
                f"| {level} | {b} | {n_eff} | {sigma_e} | {power[b]:.4e} | {survey.reference} |"
            )
    lines += [
        "",
        "## Loading",
        "",
        "```python",
        "import datasets",
        "",
        f'ds = datasets.load_dataset("path/to/this/revision", "{example}", split="train")',
        'batch = ds.with_format("numpy")[:32]  # batch["kappa"]: (32, 4, n, n) float32',
        "```",
        "",
    ]
    return "\n".join(lines)


def _redact(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Switch ``datasets`` and ``huggingface_hub`` to offline mode for the duration."""
    import datasets.config
    import huggingface_hub.constants

    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    saved_env = {name: os.environ.get(name) for name in names}
    saved_flags = (
        datasets.config.HF_HUB_OFFLINE,
        datasets.config.HF_DATASETS_OFFLINE,
        huggingface_hub.constants.HF_HUB_OFFLINE,
    )
    os.environ.update(dict.fromkeys(names, "1"))
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        (
            datasets.config.HF_HUB_OFFLINE,
            datasets.config.HF_DATASETS_OFFLINE,
            huggingface_hub.constants.HF_HUB_OFFLINE,
        ) = saved_flags
