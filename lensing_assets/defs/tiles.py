"""The sim x lmax tiles asset (all noise levels in one partition)."""

import warnings
from functools import lru_cache

import dagster as dg

from lensing_assets.defs.conditions import per_partition
from lensing_assets.defs.kappa import kappa_maps
from lensing_assets.defs.metadata import markdown_image
from lensing_assets.defs.partitions import SIM_DIM, sim_lmax_of, sim_lmax_partitions_def
from lensing_assets.defs.resources import LensingStorage, TilingResource
from lensing_core.io import InputMissingError
from lensing_core.plotting import coverage_figure, figure_to_png_bytes, tile_gallery
from lensing_core.products import TILES_CODE_VERSION, make_tiles

GALLERY_NOISE = "des_y3"  # the gallery shows the tiles a DES Y3-like survey would see

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)  # the mapping is beta in Dagster 1.13
    by_sim = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=SIM_DIM)


@lru_cache(maxsize=4)
def _coverage_png(scheme: str) -> bytes:
    """The coverage figure depends on the scheme only: drawn once per process."""
    return figure_to_png_bytes(coverage_figure(scheme))


@dg.asset(
    partitions_def=sim_lmax_partitions_def,
    deps=[dg.AssetDep(kappa_maps, partition_mapping=by_sim)],
    group_name="tiles",
    kinds={"numpy"},
    code_version=TILES_CODE_VERSION,
    automation_condition=per_partition,
)
def tiles(
    context: dg.AssetExecutionContext, storage: LensingStorage, tiling: TilingResource
) -> dg.MaterializeResult:
    """Twelve flat tiles per bin of one simulation at one lmax, for every noise level."""
    sim_id, lmax = sim_lmax_of(context.partition_key)
    hint = f"Make them with: dagster asset materialize --select kappa_maps --partition {sim_id}"
    root = storage.data_root()
    try:
        path, meta = make_tiles(
            root,
            sim_id,
            lmax,
            scheme=tiling.scheme,
            noise_convention=tiling.noise_convention,
            n_iter=tiling.n_iter,
            missing_hint=hint,
        )
    except InputMissingError as err:
        raise dg.Failure(description=str(err), allow_retries=False) from None
    by_noise, _ = root.read_tiles(sim_id, lmax, (GALLERY_NOISE,))
    gallery = tile_gallery(
        by_noise[GALLERY_NOISE], title=f"tiles[{sim_id}|{lmax}]", noise_label=GALLERY_NOISE
    )
    figures = {
        # about 40 KB: one per partition goes into the event log
        "tile_gallery": markdown_image(
            figure_to_png_bytes(gallery, dpi=48, colors=32), "tile gallery"
        ),
        "coverage_figure": markdown_image(_coverage_png(tiling.scheme), "coverage figure"),
    }
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(str(path)), **meta, **figures}
    )
