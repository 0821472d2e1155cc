#!/usr/bin/env bash
# End-to-end benchmark of kbs against a real broker: starts one Apache Kafka node (KRaft,
# scripts/kafka/single-node.sh, 1 GiB heap) on a free loopback port, seeds one topic with confluent-kafka, then measures on that topic, in the same
# run, alternating and repeated:
#   backup:  a librdkafka consumer (confluent-kafka) reading the whole topic and discarding it
#            vs `kbs backup --compression lz4` (and zstd, none) to a local folder;
#   restore: `kbs restore` of the lz4 backup into a new topic vs a confluent-kafka idempotent
#            producer writing the same records (skipped with a message when this kbs has no
#            `restore` command).
# Every run is checked: each tool must move exactly the seeded records, the first lz4 backup
# must pass `kbs validate --deep`, and each restored topic is read back and counted (untimed).
# Prints markdown tables of the medians (see benches/README.md, section "End-to-end").
#
#   benches/e2e/run.sh
#
# Environment (defaults in brackets):
#   E2E_RECORDS [400000]  E2E_PARTITIONS [4]  E2E_VALUE_BYTES [1024]  records of the seeded topic
#   E2E_ROUNDS [3]                  rounds of every measurement; the tables show medians
#   E2E_CODECS ["lz4 lz4+enc zstd none"]  kbs backup codecs measured (lz4 is the one compared; lz4+enc encrypts to a recipient)
#   E2E_SEED_CODEC [none]           producer compression of the seeded topic
#   E2E_RESTORE_CODEC [lz4]         producer compression of both restore writers (kbs --compression)
#   E2E_SECTIONS ["backup restore"] which sections to run (also: export, workers)
#   E2E_WORKERS ["1 2 3"]           workers section: the worker counts measured (use E2E_PARTITIONS
#                                   of 12 or more, so that 3 workers have partitions to share)
#   E2E_KBS                         a kbs binary to use instead of building the release one
#   E2E_WORKDIR                     where backups and logs go, a new or empty folder
#                                   [a fresh folder under $TMPDIR, removed at the end]
#   E2E_KEEP=1                      keep the fresh work folder (backups, logs, results.jsonl)
#   KBS_CACHE [~/.cache/kbs]        where scripts/setup.sh put the Python venv
set -euo pipefail
export LC_ALL=C # a decimal point in $EPOCHREALTIME and printf, whatever the user's locale

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

records="${E2E_RECORDS:-400000}"
partitions="${E2E_PARTITIONS:-4}"
value_bytes="${E2E_VALUE_BYTES:-1024}"
rounds="${E2E_ROUNDS:-3}"
codecs="${E2E_CODECS:-lz4 lz4+enc zstd none}"
seed_codec="${E2E_SEED_CODEC:-none}"
restore_codec="${E2E_RESTORE_CODEC:-lz4}"
sections="${E2E_SECTIONS:-backup restore}"
python="${KBS_CACHE:-$HOME/.cache/kbs}/venv/bin/python"
helper="$here/e2e.py"
topic="e2e-source"

log() { echo "e2e: $*" >&2; }
die() {
    echo "e2e: $*" >&2
    exit 1
}

# --- set-up ---------------------------------------------------------------------------------

workdir=""
made_workdir=""
broker_pid=""

cleanup() {
    if [ -n "$broker_pid" ]; then
        "$root/scripts/kafka/single-node.sh" stop "$workdir/kafka" || true
    fi
    if [ -n "$made_workdir" ] && [ -d "$made_workdir" ]; then
        if [ "${E2E_KEEP:-0}" = 1 ]; then
            log "kept $workdir"
        else
            rm -rf "$made_workdir"
        fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

find_tools() {
    [ -x "$python" ] && "$python" -c "import confluent_kafka" 2>/dev/null ||
        die "no Python venv with confluent-kafka at $python: run scripts/setup.sh"
    kafka_version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$root/scripts/kafka/pom.xml")"
    [ -f "${KBS_CACHE:-$HOME/.cache/kbs}/kafka-$kafka_version/.complete" ] ||
        die "no Apache Kafka $kafka_version under ${KBS_CACHE:-$HOME/.cache/kbs}: run scripts/setup.sh"
    if [ -x /usr/bin/time ] && /usr/bin/time -f %M true 2>/dev/null; then
        gnu_time=/usr/bin/time
    else
        gnu_time=""
        log "/usr/bin/time (GNU time) missing: $helper measures kbs's peak RSS from /proc instead"
    fi
    if [ -n "${E2E_KBS:-}" ]; then
        kbs="$E2E_KBS"
    else
        log "building kbs (cargo build --release --locked -p kbs-cli)"
        (cd "$root" && cargo build --release --locked -p kbs-cli) >&2
        kbs="$(cd "$root" && cargo metadata --format-version 1 --no-deps |
            "$python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/kbs"
    fi
    [ -x "$kbs" ] || die "no kbs binary at $kbs"
}

start_broker() {
    local port
    port="$("$python" "$helper" port)"
    bootstrap="127.0.0.1:$port"
    log "starting Apache Kafka $kafka_version on $bootstrap (log: $workdir/kafka/kafka.log)"
    broker_pid="$("$root/scripts/kafka/single-node.sh" start "$workdir/kafka" "$port" 1024)" ||
        die "Kafka did not start"
}

seed_topic() {
    log "seeding $topic: $records records of $value_bytes-byte values over $partitions partitions (codec $seed_codec)"
    local out
    out="$("$python" "$helper" seed "$bootstrap" "$topic" --partitions "$partitions" --records "$records" \
        --value-bytes "$value_bytes" --codec "$seed_codec")"
    seed_bytes="$(json_field "$out" bytes)"
    log "seeded in $(printf %.1f "$(json_field "$out" seconds)") s"
}

# --- measurement helpers --------------------------------------------------------------------

# json_field JSON NAME: prints one top-level field of a JSON document.
json_field() {
    "$python" -c 'import json,sys; v = json.loads(sys.argv[1])[sys.argv[2]]; print("null" if v is None else v)' "$1" "$2"
}

# run_measured NAME COMMAND...: runs COMMAND with stdout to $workdir/NAME.out and stderr to
# $workdir/NAME.err; sets m_seconds (wall time of the whole command), m_rss_kb (peak RSS) and
# m_cpu_s (user + system). Fails the benchmark when the command fails.
run_measured() {
    local name="$1"
    shift
    local out="$workdir/$name"
    # Every measurement starts with no dirty pages left by the one before (a backup's segments,
    # a restore's broker writes): otherwise their writeback lands in the next tool's time. The
    # measured tool's own writes and fsyncs stay in its time.
    sync
    if [ -n "$gnu_time" ]; then
        local start end
        start="$EPOCHREALTIME"
        if ! "$gnu_time" -o "$out.time" -f '%M %U %S' "$@" >"$out.out" 2>"$out.err"; then
            die "$name failed: $* (stderr: $(tail -n 20 "$out.err"))"
        fi
        end="$EPOCHREALTIME"
        m_seconds="$("$python" -c 'import sys; print(float(sys.argv[2]) - float(sys.argv[1]))' "$start" "$end")"
        read -r m_rss_kb user sys < <(tail -n 1 "$out.time")
        m_cpu_s="$("$python" -c 'import sys; print(float(sys.argv[1]) + float(sys.argv[2]))' "$user" "$sys")"
    else
        if ! "$python" "$helper" measure "$out.time" -- "$@" 2>"$out.err"; then
            die "$name failed: $* (stderr: $(tail -n 20 "$out.err"))"
        fi
        mv "$out.time.stdout" "$out.out"
        local doc
        doc="$(cat "$out.time")"
        m_seconds="$(json_field "$doc" seconds)"
        m_rss_kb="$(json_field "$doc" rss_kb)"
        m_cpu_s="$(json_field "$doc" cpu_s)"
    fi
}

# broker_cpu: CPU seconds the broker has used so far (user + system, from /proc).
broker_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$broker_pid/stat"
}

# seconds_of VALUE: VALUE rounded for the log. mib_of KB: kilobytes as MiB ("?" if unknown).
seconds_of() { printf '%.2f' "$1"; }
mib_of() { if [ "$1" = null ]; then echo "?"; else echo $(($1 / 1024)); fi; }

# record SECTION TOOL ROUND SECONDS RECORDS BYTES STORED_BYTES RSS_KB CPU_S: one result line,
# with the broker's CPU seconds since the last `broker_mark`.
record() {
    local broker
    broker="$(awk -v a="$broker_mark_s" -v b="$(broker_cpu)" 'BEGIN { printf "%.2f", b - a }')"
    printf '{"section": "%s", "tool": "%s", "round": %s, "seconds": %s, "records": %s, "bytes": %s, "stored_bytes": %s, "rss_kb": %s, "cpu_s": %s, "broker_cpu_s": %s}\n' \
        "$@" "$broker" >>"$workdir/results.jsonl"
}

# broker_mark: start counting the broker's CPU time for the next `record`.
broker_mark() { broker_mark_s="$(broker_cpu)"; }

# expect_records WHAT N: the run must have moved exactly the seeded records.
expect_records() {
    [ "$2" = "$records" ] || die "$1 handled $2 records, expected $records"
}

# --- backup section -------------------------------------------------------------------------

measure_consumer() {
    local round="$1" out
    broker_mark
    out="$("$python" "$helper" consume "$bootstrap" "$topic")"
    expect_records "librdkafka consumer" "$(json_field "$out" records)"
    record "backup: read $topic" "librdkafka consumer" "$round" "$(json_field "$out" seconds)" "$records" \
        "$(json_field "$out" bytes)" null "$(json_field "$out" rss_kb)" "$(json_field "$out" cpu_s)"
    log "round $round: librdkafka consumer $(seconds_of "$(json_field "$out" seconds)") s"
}

measure_kbs_backup() {
    local round="$1" codec="$2"
    local id="e2e-${codec/+/-}-r$round"
    local -a encrypt=()
    # "lz4+enc": lz4 segments encrypted to a recipient (segment format 1.1).
    if [ "${codec%+enc}" != "$codec" ]; then
        [ -f "$workdir/e2e.key" ] || "$kbs" keygen "$workdir/e2e.key" >"$workdir/e2e.pub"
        encrypt=(--encrypt-to "$(cat "$workdir/e2e.pub")")
    fi
    broker_mark
    run_measured "backup-$id" "$kbs" backup --bootstrap-servers "$bootstrap" --storage "$workdir/backups" \
        --backup-id "$id" --topics "$topic" --compression "${codec%+enc}" "${encrypt[@]}" --output json --quiet
    local report
    report="$(cat "$workdir/backup-$id.out")"
    expect_records "kbs backup $id" "$(json_field "$report" records)"
    record "backup: read $topic" "kbs backup $codec" "$round" "$m_seconds" "$records" "$seed_bytes" \
        "$(json_field "$report" bytes_out)" "$m_rss_kb" "$m_cpu_s"
    log "round $round: kbs backup $codec $(seconds_of "$m_seconds") s, peak RSS $(mib_of "$m_rss_kb") MiB"
    if [ "$codec" = lz4 ] && [ -z "${restore_backup_id:-}" ]; then
        restore_backup_id="$id" # kept for validation and the restore section
    else
        rm -rf "${workdir:?}/backups/$id"
    fi
}

backup_section() {
    local round i tool
    local -a tools=(consumer)
    for codec in $codecs; do tools+=("kbs-$codec"); done
    for round in $(seq 1 "$rounds"); do
        # Rotate the order every round, so no tool always runs first (or right after another).
        for i in "${!tools[@]}"; do
            tool="${tools[$(((i + round - 1) % ${#tools[@]}))]}"
            case "$tool" in
            consumer) measure_consumer "$round" ;;
            kbs-*) measure_kbs_backup "$round" "${tool#kbs-}" ;;
            esac
        done
    done
    if [ -n "${restore_backup_id:-}" ]; then
        log "validating $restore_backup_id (kbs validate --deep, not timed)"
        "$kbs" validate --storage "$workdir/backups" --backup-id "$restore_backup_id" --deep --quiet >&2 ||
            die "kbs validate --deep failed on $restore_backup_id"
    fi
}

# --- restore section ------------------------------------------------------------------------
# Skipped with a message when this kbs has no `restore` command. Both writers produce with the
# same codec ($restore_codec). kbs is timed as a whole command (connecting, InitProducerId and
# creating its target topic with --create-topics included); the confluent-kafka peer from a
# ready producer (topic created, records built, idempotent start-up done) to the end of flush.

measure_kbs_restore() {
    local round="$1"
    local target="e2e-restored-kbs-r$round"
    broker_mark
    run_measured "restore-$target" "$kbs" restore --bootstrap-servers "$bootstrap" --storage "$workdir/backups" \
        --backup-id "$restore_backup_id" --topic-map "$topic=$target" --create-topics \
        --compression "$restore_codec" --output json --quiet
    expect_records "kbs restore into $target (its report)" "$(json_field "$(cat "$workdir/restore-$target.out")" records)"
    record "restore: write $records records ($restore_codec)" "kbs restore (lz4 backup)" "$round" "$m_seconds" "$records" \
        "$seed_bytes" null "$m_rss_kb" "$m_cpu_s"
    local check
    check="$("$python" "$helper" count "$bootstrap" "$target")" # not timed
    expect_records "kbs restore into $target" "$(json_field "$check" records)"
    log "round $round: kbs restore $(seconds_of "$m_seconds") s, peak RSS $(mib_of "$m_rss_kb") MiB"
}

measure_producer() {
    local round="$1"
    local target="e2e-restored-librdkafka-r$round" out
    broker_mark
    out="$("$python" "$helper" produce "$bootstrap" "$target" --partitions "$partitions" --records "$records" \
        --value-bytes "$value_bytes" --codec "$restore_codec")"
    record "restore: write $records records ($restore_codec)" "librdkafka producer" "$round" "$(json_field "$out" seconds)" \
        "$records" "$(json_field "$out" bytes)" null "$(json_field "$out" rss_kb)" "$(json_field "$out" cpu_s)"
    log "round $round: librdkafka producer $(seconds_of "$(json_field "$out" seconds)") s" \
        "(+ $(seconds_of "$(json_field "$out" startup_seconds)") s start-up, not counted)"
}

# ensure_lz4_backup: the lz4 backup the restore and export sections read (made untimed when
# the backup section did not run).
ensure_lz4_backup() {
    if [ -z "${restore_backup_id:-}" ]; then
        restore_backup_id="e2e-lz4-for-restore"
        log "making the lz4 backup to restore and export ($restore_backup_id, not timed)"
        "$kbs" backup --bootstrap-servers "$bootstrap" --storage "$workdir/backups" --backup-id "$restore_backup_id" \
            --topics "$topic" --compression lz4 --quiet >&2 || die "kbs backup $restore_backup_id failed"
    fi
}

restore_section() {
    if ! "$kbs" restore --help >/dev/null 2>&1; then
        log "restore: skipped (this kbs has no 'restore' command yet)"
        echo "restore: skipped — \`kbs restore --help\` failed (the command does not exist yet)."
        echo
        return 0
    fi
    ensure_lz4_backup
    local round
    for round in $(seq 1 "$rounds"); do
        if [ $((round % 2)) = 1 ]; then
            measure_producer "$round"
            measure_kbs_restore "$round"
        else
            measure_kbs_restore "$round"
            measure_producer "$round"
        fi
    done
}

# --- export section -------------------------------------------------------------------------
# The lz4 backup exported to a local folder in each format, against reading and verifying the
# same backup alone (`kbs validate --deep`: every segment read, decompressed and checked).

measure_kbs_read() {
    local round="$1"
    broker_mark
    run_measured "read-r$round" "$kbs" validate --storage "$workdir/backups" --backup-id "$restore_backup_id" \
        --deep --output json --quiet
    record "export: $records records of the lz4 backup" "kbs validate --deep (read alone)" "$round" "$m_seconds" \
        "$records" "$seed_bytes" null "$m_rss_kb" "$m_cpu_s"
    log "round $round: kbs validate --deep $(seconds_of "$m_seconds") s"
}

measure_kbs_export() {
    local round="$1" format="$2" to="$workdir/export-$2-r$1"
    broker_mark
    run_measured "export-$format-r$round" "$kbs" export --storage "$workdir/backups" --backup-id "$restore_backup_id" \
        --to "$to" --format "$format" --output json --quiet
    local report
    report="$(cat "$workdir/export-$format-r$round.out")"
    expect_records "kbs export $format" "$(json_field "$report" records)"
    record "export: $records records of the lz4 backup" "kbs export $format" "$round" "$m_seconds" "$records" \
        "$seed_bytes" "$(json_field "$report" bytes)" "$m_rss_kb" "$m_cpu_s"
    log "round $round: kbs export $format $(seconds_of "$m_seconds") s, peak RSS $(mib_of "$m_rss_kb") MiB"
    rm -rf "$to"
}

export_section() {
    ensure_lz4_backup
    local round i tool
    local -a tools=(read parquet avro jsonl)
    for round in $(seq 1 "$rounds"); do
        for i in "${!tools[@]}"; do
            tool="${tools[$(((i + round - 1) % ${#tools[@]}))]}"
            case "$tool" in
            read) measure_kbs_read "$round" ;;
            *) measure_kbs_export "$round" "$tool" ;;
            esac
        done
    done
}

# --- workers section ------------------------------------------------------------------------
# `kbs backup --workers` and `kbs restore --workers` with 1, 2 and 3 workers on this machine,
# all started at once: wall time from the first start to the last exit, each worker's share of
# the records (from its report), its peak RSS and CPU. Every backup is a new one; every restore
# goes into new topics.

# run_workers NAME N COMMAND...: starts N copies of COMMAND at once (each with its own output
# files NAME-wK.*), waits for all; sets w_seconds (first start to last exit). Fails if one fails.
run_workers() {
    local name="$1" n="$2"
    shift 2
    sync
    local -a pids=()
    local start end k
    start="$EPOCHREALTIME"
    for k in $(seq 1 "$n"); do
        if [ -n "$gnu_time" ]; then
            "$gnu_time" -o "$workdir/$name-w$k.time" -f '%M %U %S' "$@" >"$workdir/$name-w$k.out" 2>"$workdir/$name-w$k.err" &
        else
            "$python" "$helper" measure "$workdir/$name-w$k.json" -- "$@" 2>"$workdir/$name-w$k.err" &
        fi
        pids+=("$!")
    done
    for k in "${!pids[@]}"; do
        wait "${pids[$k]}" || die "$name worker $((k + 1)) failed (stderr: $(tail -n 20 "$workdir/$name-w$((k + 1)).err"))"
    done
    end="$EPOCHREALTIME"
    w_seconds="$("$python" -c 'import sys; print(float(sys.argv[2]) - float(sys.argv[1]))' "$start" "$end")"
}

# workers_record KIND N ROUND NAME: one line per run into workers.jsonl (per-worker records,
# bytes, peak RSS and CPU from the reports and the time files).
workers_record() {
    local kind="$1" n="$2" round="$3" name="$4"
    "$python" - "$workdir" "$name" "$n" "$kind" "$round" "$w_seconds" "$seed_bytes" "$records" <<'PY' >>"$workdir/workers.jsonl"
import json, os, sys
workdir, name, n, kind, rnd, seconds, seed_bytes, records = sys.argv[1:]
workers = []
for k in range(1, int(n) + 1):
    base = os.path.join(workdir, f"{name}-w{k}")
    if os.path.exists(base + ".out") and os.path.getsize(base + ".out") > 0:
        report = json.load(open(base + ".out"))
    else:
        report = json.load(open(base + ".json.stdout"))
    if os.path.exists(base + ".time"):
        rss, user, system = open(base + ".time").read().split()[-3:]
        rss_kb, cpu = int(rss), float(user) + float(system)
    else:
        m = json.load(open(base + ".json"))
        rss_kb, cpu = m["rss_kb"], m["cpu_s"]
    workers.append({"records": report["records"], "rss_kb": rss_kb, "cpu_s": cpu})
print(json.dumps({"kind": kind, "workers": int(n), "round": int(rnd), "seconds": float(seconds),
                  "seed_bytes": int(seed_bytes), "records": int(records), "per_worker": workers}))
PY
}

measure_backup_workers() {
    local n="$1" round="$2" id="e2e-workers-$1-r$2"
    run_workers "$id" "$n" "$kbs" backup --bootstrap-servers "$bootstrap" --storage "$workdir/backups" \
        --backup-id "$id" --topics "$topic" --compression lz4 --workers "g-$id" --output json --quiet
    workers_record backup "$n" "$round" "$id"
    local total
    total="$("$python" -c 'import json,sys; print(sum(w["records"] for w in json.loads(open(sys.argv[1]).read().splitlines()[-1])["per_worker"]))' "$workdir/workers.jsonl")"
    expect_records "kbs backup --workers ($n workers)" "$total"
    log "round $round: kbs backup, $n workers: $(seconds_of "$w_seconds") s"
    rm -rf "${workdir:?}/backups/$id"
}

measure_restore_workers() {
    local n="$1" round="$2" name="e2e-rworkers-$1-r$2"
    local target="e2e-restored-$n-workers-r$round"
    run_workers "$name" "$n" "$kbs" restore --bootstrap-servers "$bootstrap" --storage "$workdir/backups" \
        --backup-id "$restore_backup_id" --topic-map "$topic=$target" --create-topics --compression "$restore_codec" \
        --restore-id "$name" --workers "g-$name" --output json --quiet
    workers_record restore "$n" "$round" "$name"
    local check
    check="$("$python" "$helper" count "$bootstrap" "$target")" # not timed
    expect_records "kbs restore --workers into $target" "$(json_field "$check" records)"
    log "round $round: kbs restore, $n workers: $(seconds_of "$w_seconds") s"
}

workers_section() {
    ensure_lz4_backup
    local round n
    for round in $(seq 1 "$rounds"); do
        # The peers, on the same broker and data: the MB/s ratios of the tables above.
        measure_consumer "$round"
        measure_producer "$round"
        for n in ${E2E_WORKERS:-1 2 3}; do
            measure_backup_workers "$n" "$round"
            measure_restore_workers "$n" "$round"
        done
    done
    "$python" - "$workdir/workers.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
print("### Scale-out workers (all on this machine)")
print()
print("| job | workers | wall s | MB/s (key+value) | per-worker MB/s | balance: max/mean records, median (worst) | peak RSS per worker | CPU s (all workers) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for kind in ("backup", "restore"):
    for n in sorted({r["workers"] for r in runs if r["kind"] == kind}):
        rs = [r for r in runs if r["kind"] == kind and r["workers"] == n]
        secs = statistics.median(r["seconds"] for r in rs)
        mbs = rs[0]["seed_bytes"] / 1e6 / secs
        balances = [max(w["records"] for w in r["per_worker"]) / (r["records"] / n) for r in rs]
        rss = max(w["rss_kb"] for r in rs for w in r["per_worker"]) // 1024
        cpu = statistics.median(sum(w["cpu_s"] for w in r["per_worker"]) for r in rs)
        print(f"| {kind} | {n} | {secs:.2f} | {mbs:.0f} | {mbs / n:.0f} | {statistics.median(balances):.2f} ({max(balances):.2f}) | {rss} MiB | {cpu:.1f} |")
print()
PY
}

# --- main -----------------------------------------------------------------------------------

main() {
    find_tools
    if [ -n "${E2E_WORKDIR:-}" ]; then
        workdir="$E2E_WORKDIR"
        mkdir -p "$workdir"
        [ -z "$(ls -A "$workdir")" ] || die "E2E_WORKDIR $workdir is not empty (backups there would be resumed)"
    else
        workdir="$(mktemp -d "${TMPDIR:-/tmp}/kbs-e2e.XXXXXX")"
        made_workdir="$workdir"
    fi
    mkdir -p "$workdir/backups"
    : >"$workdir/results.jsonl"
    start_broker
    seed_topic
    local section
    local tables="$workdir/tables.md"
    : >"$tables"
    for section in $sections; do
        case "$section" in
        backup) backup_section ;;
        restore) restore_section >>"$tables" ;;
        export) export_section ;;
        workers) workers_section >>"$tables" ;;
        *) die "unknown section $section (E2E_SECTIONS: backup, restore, export, workers)" ;;
        esac
    done
    echo "## kbs end-to-end benchmark ($(date -u +%Y-%m-%d))"
    echo
    echo "$records records, $partitions partitions, $value_bytes-byte JSON-ish values (seed codec $seed_codec)," \
        "$(awk -v b="$seed_bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB of keys+values; Apache Kafka $kafka_version (one KRaft node, 1 GiB heap) on loopback; $rounds rounds, medians; MB = 10^6 bytes;" \
        "$(nproc) CPUs."
    echo
    "$python" "$helper" table "$workdir/results.jsonl"
    cat "$tables"
    cat <<'EOF'
Columns: MB/s (key+value) is the seeded key and value bytes over the wall time; MB/s stored is the
segment bytes kbs wrote over the same time. Seconds: the whole `kbs` command (start to exit, so
connecting, the lease, manifest and checkpoint writes included); for confluent-kafka, client
creation to the last record read (consumer) or from a ready producer (idempotent start-up done,
logged) to the end of its flush; never the interpreter start.
Peak RSS: the maximum over rounds, of the kbs process or of the whole Python process. CPU s: user
+ system time of that process (all threads); broker CPU s: the Kafka JVM's during the measurement.
EOF
}

main "$@"
