#!/usr/bin/env bash
# The main job on the built-in default: installs missing OS prerequisites, builds, and runs the
# default experiment through the Aspire AppHost (redis-server, coordinator, workers, aggregator).
#   scripts/run.sh            run, write runs/<time>/ with report.html, print its path, exit
#   scripts/run.sh --watch    keep the dashboards up after the run until Ctrl+C
#   other options go to the AppHost: --model DIR --pairs FILE --samples N --devices cpu,cpu --out DIR
#   --sites ... --modes ... (the options of `notice patch`). Relative paths are relative to the
#   directory you run this from.
set -euo pipefail
caller_dir=$PWD
cd "$(dirname "$0")/.."
bash scripts/prereqs.sh
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
# The AppHost resolves relative paths against the caller's directory, not this one.
export NOTICE_CALLER_DIR=$caller_dir
args=()
exit_when_done=1
for a in "$@"; do
  if [[ $a == --watch ]]; then exit_when_done=0; else args+=("$a"); fi
done
[[ $exit_when_done -eq 1 ]] && args+=(--exit-when-done)
build=()
# Tests run the AppHost this way after building the solution once.
[[ ${NOTICE_NO_BUILD:-0} == 1 ]] && build=(--no-build)
exec dotnet run "${build[@]}" --project Notice.AppHost -- "${args[@]}"
