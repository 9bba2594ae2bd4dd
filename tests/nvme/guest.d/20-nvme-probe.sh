#!/bin/bash
# Guest test of nvme-probe (tools/nvme-probe), run by scripts/nvme-qemu-test.sh
# inside the QEMU guest. It checks field by field that `nvme-probe list/info/
# health -o json` agree with nvme-cli (`nvme list`, `id-ctrl`, `id-ns`,
# `smart-log`, all `-o json`) on the same devices, that LBA sizes and sizes
# match what the harness promises (RINGLINE_NVME_NS*_{BYTES,LBA}), that the
# maximum transfer is the kernel's limit and within MDTS, and the exit codes:
# 0 normally, 1 for a non-NVMe path, 3 for an unprivileged user on a
# root-only device node. Read-only: it writes nothing to the namespaces.
set -euo pipefail

skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
step() { echo "--- $*"; }

[[ "${RINGLINE_IN_QEMU:-}" == 1 ]] || skip "not inside the QEMU NVMe guest (run scripts/nvme-qemu-test.sh)"
probe="${RINGLINE_BUILD_DIR:?}/bin/nvme-probe"
[[ -x "$probe" ]] || fail "$probe is not built (cmake --build ... --target nvme-probe)"
for tool in nvme python3 setpriv; do
  command -v "$tool" >/dev/null || skip "$tool is not installed on the host (the guest runs it from the host's root)"
done

ctrl=$RINGLINE_NVME_CTRL
ns1=$RINGLINE_NVME_NS1 ns2=$RINGLINE_NVME_NS2
ns1_block=$RINGLINE_NVME_NS1_BLOCK
ns2_block=${RINGLINE_NVME_NS2_BLOCK:-/dev/nvme0n2}
work=$(mktemp -d)

# run EXPECTED_RC OUTFILE CMD...: runs CMD with stdout to OUTFILE (stderr
# shown), fails unless it exits with EXPECTED_RC.
run() {
  local want=$1 out=$2 rc=0
  shift 2
  echo "\$ $*"
  "$@" >"$out" || rc=$?
  [[ $rc == "$want" ]] || { cat "$out"; fail "'$*' exited $rc, expected $want"; }
}

step "reference data from nvme-cli"
run 0 "$work/nvme-list.json" nvme list -o json
run 0 "$work/id-ctrl.json" nvme id-ctrl "$ctrl" -o json
run 0 "$work/id-ns1.json" nvme id-ns "$ns1" -o json
run 0 "$work/id-ns2.json" nvme id-ns "$ns2" -o json
run 0 "$work/smart-before.json" nvme smart-log "$ctrl" -o json

step "nvme-probe -o json"
run 0 "$work/list.json" "$probe" list -o json
run 0 "$work/info-ns1.json" "$probe" info "$ns1" -o json
run 0 "$work/info-ns2-block.json" "$probe" info "$ns2_block" --output-format json
run 0 "$work/info-ctrl.json" "$probe" info "$ctrl" -o json
run 0 "$work/health-ctrl.json" "$probe" health "$ctrl" -o json
run 0 "$work/health-ns1.json" "$probe" health "$ns1" -o json
run 0 "$work/smart-after.json" nvme smart-log "$ctrl" -o json

step "unprivileged user (uid 65534, no groups)"
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
run 0 "$work/list-nobody.json" as_nobody "$probe" list -o json
run 3 "$work/info-nobody.json" as_nobody "$probe" info "$ns1" -o json
run 3 "$work/health-nobody.txt" as_nobody "$probe" health "$ctrl"

step "error paths"
run 1 "$work/info-null.json" "$probe" info /dev/null -o json
run 1 "$work/info-missing.json" "$probe" info /dev/nvme0n99 -o json
run 2 "$work/usage.txt" "$probe" info "$ns1" -o yaml

step "compare"
python3 - "$work" <<'EOF'
import json, os, sys

work = sys.argv[1]
env = os.environ
failures = []


def load(name):
    with open(os.path.join(work, name)) as f:
        return json.load(f)


def check(what, got, want):
    if got == want:
        print(f"ok   {what}: {got!r}")
    else:
        print(f"FAIL {what}: nvme-probe says {got!r}, expected {want!r}")
        failures.append(what)


def between(what, got, lo, hi):
    if lo <= got <= hi:
        print(f"ok   {what}: {got} in [{lo}, {hi}]")
    else:
        print(f"FAIL {what}: nvme-probe says {got}, nvme-cli said {lo} before and {hi} after")
        failures.append(what)


def num(v):  # nvme-cli prints 128-bit counters as strings
    return int(v)


ctrl_dev, ns1, ns2 = env["RINGLINE_NVME_CTRL"], env["RINGLINE_NVME_NS1"], env["RINGLINE_NVME_NS2"]
ns1_block = env["RINGLINE_NVME_NS1_BLOCK"]
ns2_block = env.get("RINGLINE_NVME_NS2_BLOCK", "/dev/nvme0n2")
serial = env["RINGLINE_NVME_SERIAL"]
expected = {
    1: (int(env["RINGLINE_NVME_NS1_BYTES"]), int(env["RINGLINE_NVME_NS1_LBA"]), ns1, ns1_block),
    2: (int(env["RINGLINE_NVME_NS2_BYTES"]), int(env["RINGLINE_NVME_NS2_LBA"]), ns2, ns2_block),
}
id_ctrl = load("id-ctrl.json")
id_ns = {1: load("id-ns1.json"), 2: load("id-ns2.json")}

# ---- list vs nvme list ----------------------------------------------------
lst = load("list.json")
check("list.ok", lst["ok"], True)
check("list.schema_version", lst["schema_version"], 1)
ctrls = {c["device"]: c for c in lst["controllers"]}
check("list: controllers", sorted(ctrls), [ctrl_dev])
c = ctrls[ctrl_dev]
check("list: serial", c["serial"], serial)
check("list: serial vs id-ctrl", c["serial"], id_ctrl["sn"].strip())
check("list: model vs id-ctrl", c["model"], id_ctrl["mn"].strip())
check("list: firmware vs id-ctrl", c["firmware"], id_ctrl["fr"].strip())
check("list: transport", c["transport"], "pcie")
check("list: subsystem_nqn vs id-ctrl", c["subsystem_nqn"], id_ctrl["subnqn"].strip())
by_block = {n["block_device"]: n for n in c["namespaces"]}
cli_devices = load("nvme-list.json")["Devices"]
check("list: namespaces vs nvme list", sorted(by_block), sorted(d["DevicePath"] for d in cli_devices))
for d in cli_devices:
    n = by_block.get(d["DevicePath"])
    if n is None:
        continue
    p = f"list {d['DevicePath']}"
    check(f"{p}: nsid", n["nsid"], d["NameSpace"])
    check(f"{p}: lba_size", n["lba_size"], d["SectorSize"])
    check(f"{p}: size_lbas", n["size_lbas"], d["MaximumLBA"])
    check(f"{p}: size_bytes", n["size_bytes"], d["PhysicalSize"])
    check(f"{p}: utilization_bytes", n["utilization_bytes"], d["UsedBytes"])
    check(f"{p}: serial", c["serial"], d["SerialNumber"])
    check(f"{p}: model", c["model"], d["ModelNumber"])
    check(f"{p}: firmware", c["firmware"], d["Firmware"])
    check(f"{p}: source", n["source"], "identify")
for nsid, (size, lba, generic, block) in expected.items():
    n = by_block[block]
    check(f"list nsid {nsid}: generic device", n["generic_device"], generic)
    check(f"list nsid {nsid}: size vs harness", n["size_bytes"], size)
    check(f"list nsid {nsid}: lba size vs harness", n["lba_size"], lba)

# Unprivileged: libnvme cannot open the namespaces, sysfs still gives sizes.
nobody = load("list-nobody.json")
nb = {n["block_device"]: n for c2 in nobody["controllers"] for n in c2["namespaces"]}
for nsid, (size, lba, generic, block) in expected.items():
    check(f"list as nobody nsid {nsid}: size", nb[block]["size_bytes"], size)
    check(f"list as nobody nsid {nsid}: lba size", nb[block]["lba_size"], lba)
    check(f"list as nobody nsid {nsid}: nsid", nb[block]["nsid"], nsid)

# ---- info vs id-ctrl / id-ns ------------------------------------------------
def check_controller(p, ic):
    check(f"{p}: vendor_id", ic["vendor_id"], id_ctrl["vid"])
    check(f"{p}: subsystem_vendor_id", ic["subsystem_vendor_id"], id_ctrl["ssvid"])
    check(f"{p}: serial", ic["serial"], id_ctrl["sn"].strip())
    check(f"{p}: model", ic["model"], id_ctrl["mn"].strip())
    check(f"{p}: firmware", ic["firmware"], id_ctrl["fr"].strip())
    check(f"{p}: controller_id", ic["controller_id"], id_ctrl["cntlid"])
    ver = id_ctrl["ver"]
    want_ver = f"{ver >> 16}.{(ver >> 8) & 0xff}" + (f".{ver & 0xff}" if ver & 0xff else "")
    check(f"{p}: version", ic["version"], want_ver)
    check(f"{p}: mdts", ic["mdts"], id_ctrl["mdts"])
    check(f"{p}: mdts_bytes", ic["mdts_bytes"], (4096 << id_ctrl["mdts"]) if id_ctrl["mdts"] else 0)
    check(f"{p}: oncs", ic["oncs"], id_ctrl["oncs"])
    names = ["compare", "write_uncorrectable", "dataset_management", "write_zeroes",
             "save_select_features", "reservations", "timestamp", "verify", "copy"]
    check(f"{p}: optional_commands", ic["optional_commands"],
          {name: bool(id_ctrl["oncs"] >> bit & 1) for bit, name in enumerate(names)})
    check(f"{p}: volatile_write_cache", ic["volatile_write_cache"], bool(id_ctrl["vwc"] & 1))
    check(f"{p}: namespace_count", ic["namespace_count"], id_ctrl["nn"])
    check(f"{p}: warning_temperature_kelvin", ic["warning_temperature_kelvin"], id_ctrl["wctemp"])
    check(f"{p}: critical_temperature_kelvin", ic["critical_temperature_kelvin"], id_ctrl["cctemp"])
    check(f"{p}: subsystem_nqn", ic["subsystem_nqn"], id_ctrl["subnqn"].strip())


def check_namespace(p, n, nsid):
    idn = id_ns[nsid]
    size, lba, generic, block = expected[nsid]
    check(f"{p}: nsid", n["nsid"], nsid)
    check(f"{p}: size_lbas", n["size_lbas"], idn["nsze"])
    check(f"{p}: capacity_lbas", n["capacity_lbas"], idn["ncap"])
    check(f"{p}: utilization_lbas", n["utilization_lbas"], idn["nuse"])
    nformats = idn["nlbaf"] + 1
    index = idn["flbas"] & 0xF
    if nformats > 16:
        index |= (idn["flbas"] & 0x60) >> 1
    check(f"{p}: lba_format_index", n["lba_format_index"], index)
    check(f"{p}: lba_formats", [(f["index"], f["data_size"], f["metadata_size"],
                                 f["relative_performance"], f["in_use"]) for f in n["lba_formats"]],
          [(i, 1 << f["ds"], f["ms"], f["rp"], i == index)
           for i, f in enumerate(idn["lbafs"][:nformats])])
    check(f"{p}: metadata_extended_lba", n["metadata_extended_lba"], bool(idn["flbas"] & 0x10))
    check(f"{p}: lba_size", n["lba_size"], 1 << idn["lbafs"][index]["ds"])
    check(f"{p}: metadata_size", n["metadata_size"], idn["lbafs"][index]["ms"])
    check(f"{p}: thin_provisioning", n["thin_provisioning"], bool(idn["nsfeat"] & 1))
    check(f"{p}: deallocated_reads_zeroes", n["deallocated_reads_zeroes"], idn["dlfeat"] & 7 == 1)
    check(f"{p}: size vs harness", n["size_bytes"], size)
    check(f"{p}: lba size vs harness", n["lba_size"], lba)
    check(f"{p}: generic device", n["devices"]["generic"], generic)
    check(f"{p}: passthrough device", n["devices"]["passthrough"], generic)
    check(f"{p}: block device", n["devices"]["block"], block)
    check(f"{p}: controller device", n["devices"]["controller"], ctrl_dev)
    name = os.path.basename(block)
    with open(f"/sys/block/{name}/queue/max_hw_sectors_kb") as f:
        kernel = int(f.read()) * 1024
    mt = n["max_transfer"]
    check(f"{p}: max_transfer.bytes vs sysfs", mt["bytes"], kernel)
    check(f"{p}: max_transfer.source", mt["source"], "kernel")
    if id_ctrl["mdts"]:
        check(f"{p}: max transfer within MDTS", mt["bytes"] <= 4096 << id_ctrl["mdts"], True)


for fname, dev, nsid, kind in (("info-ns1.json", ns1, 1, "namespace_generic"),
                               ("info-ns2-block.json", ns2_block, 2, "namespace_block")):
    info = load(fname)
    p = f"info {dev}"
    check(f"{p}: ok", info["ok"], True)
    check(f"{p}: kind", info["kind"], kind)
    check(f"{p}: nsid", info["nsid"], nsid)
    check(f"{p}: passthrough", info["devices"]["passthrough"], expected[nsid][2])
    check_controller(p, info["controller"])
    check(f"{p}: one namespace", len(info["namespaces"]), 1)
    check_namespace(p, info["namespaces"][0], nsid)
    check(f"{p}: max_transfer", info["max_transfer"], info["namespaces"][0]["max_transfer"])

info = load("info-ctrl.json")
check(f"info {ctrl_dev}: kind", info["kind"], "controller")
check(f"info {ctrl_dev}: passthrough", info["devices"]["passthrough"], None)
check_controller(f"info {ctrl_dev}", info["controller"])
check(f"info {ctrl_dev}: namespaces", [n["nsid"] for n in info["namespaces"]], [1, 2])
for n in info["namespaces"]:
    check_namespace(f"info {ctrl_dev} nsid {n['nsid']}", n, n["nsid"])

# ---- health vs smart-log -----------------------------------------------------
before, after = load("smart-before.json"), load("smart-after.json")
exact = {  # fields that do not move while nothing writes
    "temperature_kelvin": "temperature",
    "available_spare_percent": "avail_spare",
    "available_spare_threshold_percent": "spare_thresh",
    "percentage_used": "percent_used",
    "power_cycles": "power_cycles",
    "unsafe_shutdowns": "unsafe_shutdowns",
    "media_errors": "media_errors",
    "warning_temperature_minutes": "warning_temp_time",
    "critical_temperature_minutes": "critical_comp_time",
}
counters = {  # may grow between the two nvme-cli reads
    "data_units_read": "data_units_read",
    "data_units_written": "data_units_written",
    "host_read_commands": "host_read_commands",
    "host_write_commands": "host_write_commands",
    "controller_busy_minutes": "controller_busy_time",
    "power_on_hours": "power_on_hours",
    "error_log_entries": "num_err_log_entries",
}
for fname, dev in (("health-ctrl.json", ctrl_dev), ("health-ns1.json", ns1)):
    h = load(fname)
    p = f"health {dev}"
    check(f"{p}: ok", h["ok"], True)
    check(f"{p}: alarms", h["alarms"], [])
    check(f"{p}: controller_device", h["controller_device"], ctrl_dev)
    check(f"{p}: serial", h["controller"]["serial"], serial)
    s = h["smart"]
    check(f"{p}: critical_warning.raw", s["critical_warning"]["raw"], num(before["critical_warning"]))
    for ours, theirs in exact.items():
        check(f"{p}: {ours}", num(s[ours]), num(before[theirs]))
    for ours, theirs in counters.items():
        between(f"{p}: {ours}", num(s[ours]), num(before[theirs]), num(after[theirs]))
    check(f"{p}: temperature_celsius", s["temperature_celsius"], num(before["temperature"]) - 273)

# ---- exit codes and error documents -----------------------------------------
err = load("info-nobody.json")
check("info as nobody: ok", err["ok"], False)
check("info as nobody: error.kind", err["error"]["kind"], "permission_denied")
check("info as nobody: message says root", "run as root" in err["error"]["message"], True)
err = load("info-null.json")
check("info /dev/null: error.kind", err["error"]["kind"], "not_nvme")
err = load("info-missing.json")
check("info /dev/nvme0n99: error.kind", err["error"]["kind"], "not_found")

if failures:
    sys.exit(f"FAIL: {len(failures)} check(s) failed: {', '.join(failures)}")
print("all nvme-probe JSON checks passed")
EOF

step "text output"
run 0 "$work/list.txt" "$probe" list
grep -q "$RINGLINE_NVME_SERIAL" "$work/list.txt" || fail "list text lacks the serial"
grep -q "$ns1" "$work/list.txt" || fail "list text lacks $ns1"
run 0 "$work/info.txt" "$probe" info "$ns1_block"
grep -Eq "^Passthrough device +$ns1\$" "$work/info.txt" || fail "info text lacks 'Passthrough device  $ns1'"
grep -Eq "^ +0 +512 +0 +best +\*\$" "$work/info.txt" || fail "info text does not mark LBA format 0 in use"
run 0 "$work/health.txt" "$probe" health "$ctrl"
grep -q "No alarms." "$work/health.txt" || fail "health text lacks 'No alarms.'"
grep -q $'\033' "$work"/*.txt && fail "colour codes in output that is not a terminal"
cat "$work/info.txt"

echo "nvme-probe guest checks passed"
