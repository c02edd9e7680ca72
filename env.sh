# Source this file from the repository root (`. ./env.sh`): the project's environment.
# It activates .venv and sets what the Dagster CLI and the platform read.
_lensing_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
. "$_lensing_root/.venv/bin/activate"
export DAGSTER_HOME="${DAGSTER_HOME:-$_lensing_root/.dagster_home}"
mkdir -p "$DAGSTER_HOME"
ln -sf "$_lensing_root/dagster.yaml" "$DAGSTER_HOME/dagster.yaml"
# `dagster asset materialize --select tiles --partition 109|600` without -m:
export DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME="${DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME:-lensing_assets}"
export DAGSTER_CLI_ASSET_LIST_MODULE_NAME="${DAGSTER_CLI_ASSET_LIST_MODULE_NAME:-lensing_assets}"
# healpy's OpenMP runtime otherwise spins at every barrier, slowing a busy machine.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
export LENSING_DATA_ROOT="${LENSING_DATA_ROOT:-$_lensing_root/data}"
unset _lensing_root
