"""Models per (lmax, noise level): the field-level compressor and the Gaussian NPE.

Both train where the ``training`` resource says (``auto``: the GPU when there is one, the CPU
otherwise, no change of code) and run in the ``gpu`` pool, which ``dagster.yaml`` limits to
one step at a time; their jobs also carry the run tag ``lensing/resource=gpu``, limited to one
run at a time by the run queue. Their run configs are derived from the deployment's core
configs (:mod:`lensing_assets.defs.run_config`), so they are built with the definitions.
"""

# No `from __future__ import annotations`: Dagster reads the run-config class, made in
# build_model_assets, from the annotation of each asset's `config` parameter.

import dagster as dg

from lensing_assets.defs.conditions import rebuild_model
from lensing_assets.defs.dataset import tile_shards
from lensing_assets.defs.metadata import materialized
from lensing_assets.defs.partitions import config_of, dataset_partitions_def
from lensing_assets.defs.run_config import run_config_class, to_core
from lensing_core.inference.config import TrainingSettings
from lensing_core.io import InputMissingError
from lensing_core.storage import DataRoot

GPU_POOL = "gpu"
GPU_RUN_TAGS = {"lensing/resource": "gpu"}
COMPRESSOR_KEY = dg.AssetKey("compressor_model")
NPE_KEY = dg.AssetKey("npe_model")


def missing_input(
    err: InputMissingError, root: DataRoot, key: str, *, chain: str = "field"
) -> dg.Failure:
    """A Failure for a missing upstream file of configuration *key*.

    Its description ends with the command that makes the first missing upstream asset of
    the *chain*: ``"field"`` (shards, compressor, NPE) or ``"cl"`` (shards, band powers).
    """
    lmax, noise = config_of(key)
    upstream = [("tile_shards", root.shards(lmax, noise).manifest)]
    if chain == "field":
        upstream += [
            ("compressor_model", root.compressor(lmax, noise).result),
            ("npe_model", root.npe(lmax, noise).checkpoint),
        ]
    else:
        upstream += [("band_powers", root.band_powers_path(lmax, noise))]
    asset = next((name for name, path in upstream if not path.exists()), "tile_shards")
    hint = f"Make it with: dagster asset materialize --select {asset} --partition '{key}'"
    return dg.Failure(description=f"{err}. {hint}", allow_retries=False)


def build_model_assets(training: TrainingSettings) -> list[dg.AssetsDefinition]:
    """
    ``compressor_model`` and ``npe_model``, with run configs made from *training*'s configs.

    Every field of ``training.compressor`` (plus ``max_steps``) and of ``training.npe`` can
    be set in the run config; a field left out keeps the deployment's value.
    """
    CompressorRunConfig = run_config_class(
        "CompressorRunConfig", training.compressor, {"max_steps": (int | None, None)}
    )
    NPERunConfig = run_config_class("NPERunConfig", training.npe)

    @dg.asset(
        partitions_def=dataset_partitions_def,
        deps=[tile_shards],
        group_name="models",
        kinds={"pytorch"},
        pool=GPU_POOL,
        code_version="compressor-2",  # 2: split by simulation, face symmetries
        automation_condition=rebuild_model,
    )
    def compressor_model(
        context: dg.AssetExecutionContext,
        config: CompressorRunConfig,  # type: ignore[valid-type]
        storage: dg.ResourceParam[DataRoot],
        training: dg.ResourceParam[TrainingSettings],
    ) -> dg.MaterializeResult:
        """EfficientNet compressor of one configuration: tiles -> standardised (Omega_m, S8).

        Resumes an interrupted training from its last checkpoint.
        """
        from lensing_core.inference.pipeline import train_compressor  # torch: load when used

        lmax, noise = config_of(context.partition_key)
        cfg = to_core(config, training.compressor)
        try:
            result = train_compressor(
                storage,
                lmax,
                noise,
                cfg,
                split=training.split,
                accelerator=training.accelerator,
                max_steps=config.max_steps,  # type: ignore[attr-defined]
            )
        except InputMissingError as err:
            raise missing_input(err, storage, str(context.partition_key)) from None
        return materialized(result)

    @dg.asset(
        partitions_def=dataset_partitions_def,
        deps=[compressor_model],
        group_name="models",
        kinds={"pytorch"},
        pool=GPU_POOL,
        code_version="npe-2",  # 2: NPE-validation set, noise realisations
        automation_condition=rebuild_model,
    )
    def npe_model(
        context: dg.AssetExecutionContext,
        config: NPERunConfig,  # type: ignore[valid-type]
        storage: dg.ResourceParam[DataRoot],
        training: dg.ResourceParam[TrainingSettings],
    ) -> dg.MaterializeResult:
        """Gaussian NPE of one configuration, trained on summaries of augmented tiles."""
        from lensing_core.inference.pipeline import train_npe  # torch: load when used

        lmax, noise = config_of(context.partition_key)
        try:
            result = train_npe(
                storage, lmax, noise, to_core(config, training.npe), device=training.device()
            )
        except InputMissingError as err:
            raise missing_input(err, storage, str(context.partition_key)) from None
        return materialized(result)

    return [compressor_model, npe_model]
