# Source this file from the repository root (`. ./env.sh`): the project's environment.
# It activates .venv and sets what the Dagster CLI and the platform read.
_lensing_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
# The instance's storage: LENSING_INSTANCE=sqlite (the default: files in DAGSTER_HOME) or
# postgres (dagster.postgres.yaml: a PostgreSQL server named by the DAGSTER_PG_* variables).
case "${LENSING_INSTANCE:-sqlite}" in
    sqlite) _lensing_yaml="$_lensing_root/dagster.yaml" ;;
    postgres) _lensing_yaml="$_lensing_root/dagster.postgres.yaml" ;;
    *)
        echo "env.sh: LENSING_INSTANCE=$LENSING_INSTANCE is not an instance storage:" \
            "use sqlite (the default) or postgres" >&2
        unset _lensing_root _lensing_yaml
        return 1 2>/dev/null || exit 1
        ;;
esac
. "$_lensing_root/.venv/bin/activate"
export DAGSTER_HOME="${DAGSTER_HOME:-$_lensing_root/.dagster_home}"
mkdir -p "$DAGSTER_HOME"
ln -sf "$_lensing_yaml" "$DAGSTER_HOME/dagster.yaml"
if [ "${LENSING_INSTANCE:-sqlite}" = postgres ]; then
    for _lensing_var in DAGSTER_PG_HOST DAGSTER_PG_PORT DAGSTER_PG_USERNAME DAGSTER_PG_PASSWORD \
        DAGSTER_PG_DB; do
        eval "[ -n \"\${$_lensing_var:-}\" ]" ||
            echo "env.sh: warning: LENSING_INSTANCE=postgres but $_lensing_var is not set" >&2
    done
    unset _lensing_var
fi
# `dagster asset materialize --select tiles --partition 109|600` without -m:
export DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME="${DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME:-lensing_assets}"
export DAGSTER_CLI_ASSET_LIST_MODULE_NAME="${DAGSTER_CLI_ASSET_LIST_MODULE_NAME:-lensing_assets}"
# healpy's OpenMP runtime otherwise spins at every barrier, slowing a busy machine.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
export LENSING_DATA_ROOT="${LENSING_DATA_ROOT:-$_lensing_root/data}"
unset _lensing_root _lensing_yaml
