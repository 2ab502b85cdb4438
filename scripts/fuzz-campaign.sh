#!/usr/bin/env bash
# fuzz-campaign.sh N RESULTS [package:target ...]
#
# Runs a fuzz campaign: each of make fuzz's targets (make fuzz-targets lists
# them), or only those named, in the order named, for N inputs (go test
# -fuzztime Nx), one at a time under nice (NICE, default 19), with make fuzz's
# minimize time for each. It appends one line per target to RESULTS:
#
#   <time> <package> <target> inputs=<n> seconds=<s> new_corpus=<n> crashers=<n> result=<ok|FAIL|...>
#
# new_corpus is the engine's "new interesting" count (inputs that widened
# coverage, kept in Go's fuzz cache); crashers are the new files under the
# target's testdata/fuzz, each a failing input to fix with its regression seed.
# Go's engine sometimes ends a run with "context deadline exceeded" and no
# failing input: such a target is run once more, and the line says so. Each
# target's full output goes to RESULTS.logs/. It exits non-zero if a target
# failed, after running them all.
#
# Example, ten million inputs per target, detached:
#   setsid nohup scripts/fuzz-campaign.sh 10000000 /tmp/fuzz/results.txt >/dev/null 2>&1 &
set -uo pipefail

if [ $# -lt 2 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
	echo "usage: $0 N RESULTS [package:target ...]  (make fuzz-targets lists the targets)" >&2
	exit 2
fi
n=$1 results=$2
shift 2
repo=$(cd "$(dirname "$0")/.." && pwd)
go=${GO:-go}
mkdir -p "$(dirname "$results")" "$results.logs" || exit 1
results=$(cd "$(dirname "$results")" && pwd)/$(basename "$results")
logs=$results.logs

all=$(make -s --no-print-directory -C "$repo" fuzz-targets) || exit 1
# targets: package:target:minimize time, those named in their order, or all.
targets=()
if [ $# -eq 0 ]; then
	read -r -d '' -a targets <<<"$all"
else
	for want in "$@"; do
		line=$(awk -F: -v want="$want" '$1 ":" $2 == want' <<<"$all")
		if [ -z "$line" ]; then
			echo "$0: $want is not one of make fuzz-targets' package:target" >&2
			exit 2
		fi
		targets+=("$line")
	done
fi

# newest reports the value of the last "<key>: <number>" in a log.
newest() { grep -o "$1: [0-9]*" "$2" | tail -1 | grep -o '[0-9]*$' || echo 0; }
# crashers counts the inputs under a target's testdata/fuzz.
crashers() { find "$repo/$1/testdata/fuzz/$2" -type f 2>/dev/null | wc -l; }

# nice alone yields only within the process's autogroup: started with
# setsid, the campaign is a session of its own, which the kernel schedules as
# an equal of the test suite's unless the group itself is niced.
if [ -w /proc/self/autogroup ]; then
	echo "${NICE:-19}" >/proc/self/autogroup 2>/dev/null || true
fi

echo "# $(date -u +%FT%TZ) fuzz-campaign.sh $n: ${#targets[@]} targets, $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'), $("$go" version | cut -d' ' -f3), $(nproc) CPUs, $(uname -n)" >>"$results"
failed=0
for t in "${targets[@]}"; do
	pkg=${t%%:*} rest=${t#*:}
	name=${rest%%:*} minimize=${rest#*:}
	log=$logs/$(tr -c 'A-Za-z0-9\n' _ <<<"${pkg#./}")$name.log
	before=$(crashers "$pkg" "$name")
	note=""
	for attempt in 1 2; do
		start=$(date +%s)
		(cd "$repo" && nice -n "${NICE:-19}" "$go" test "$pkg" -run '^$' -fuzz "^$name\$" -fuzztime "${n}x" -fuzzminimizetime "$minimize") >"$log" 2>&1
		status=$?
		seconds=$(($(date +%s) - start))
		found=$(($(crashers "$pkg" "$name") - before))
		result=ok
		if [ $status -ne 0 ]; then
			result=FAIL
			if [ $found -eq 0 ] && grep -q 'context deadline exceeded' "$log" && [ $attempt -eq 1 ]; then
				note=" (first run: context deadline exceeded at $(newest execs "$log") inputs, no failing input; run again)"
				cp "$log" "$log.first"
				continue
			fi
			failed=1
		fi
		break
	done
	echo "$(date -u +%FT%TZ) $pkg $name inputs=$(newest execs "$log") seconds=$seconds new_corpus=$(newest 'new interesting' "$log") crashers=$found result=$result$note" >>"$results"
done
exit $failed
