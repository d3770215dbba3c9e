#!/usr/bin/env bash
# The test command: installs missing OS prerequisites, builds, runs every test.
#   scripts/test.sh [extra dotnet test arguments, e.g. --filter Category!=Slow]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prereqs.sh --tests
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
# Debug, the configuration Aspire.Hosting.Testing starts the services in.
dotnet build Notice.sln -nologo -v q
log=$(mktemp)
set +e
dotnet test Notice.sln --no-build -nologo "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for every test project together.
awk '/Passed!|Failed!/ { for (i = 1; i <= NF; i++) { if ($i == "Failed:") f += $(i+1); if ($i == "Passed:") p += $(i+1); if ($i == "Skipped:") s += $(i+1) } }
     END { gsub(",", "", f); printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
rm -f "$log"
exit "$status"
