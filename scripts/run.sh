#!/usr/bin/env bash
# The main job on the built-in default: installs missing OS prerequisites, builds, and runs a
# patching experiment end to end on the built-in model and manifest, printing where results are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prereqs.sh
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build src/Notice.Cli -c Release -nologo -v q
notice="dotnet src/Notice.Cli/bin/Release/net10.0/notice.dll"
model=tests/fixtures/blip-tiny
pairs=tests/fixtures/blip-tiny/pairs.jsonl
out=${1:-runs/$(date +%Y%m%d-%H%M%S)}
echo "== answer: what does the model say?"
$notice answer --model $model --image $model/red_circle_blue_square.png --question "Is the circle red or blue?"
echo "== patch: image and text corruption, module-wise and head-wise sites"
$notice patch --model $model --pairs $pairs --mode image,text --site mlp,attn,cross,heads:attn,heads:cross --out "$out"
echo "== analyze: universal heads, heatmaps and the report"
$notice analyze --results "$out" --out "$out"
echo "== results: $out/results.csv, $out/results.parquet, $out/baselines.csv; report: $out/report.html"
