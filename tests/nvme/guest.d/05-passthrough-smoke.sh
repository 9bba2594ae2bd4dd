#!/bin/bash
# Guest smoke test of the NVMe passthrough path with Debian's own tools, run by
# scripts/nvme-qemu-test.sh inside the QEMU guest. It proves the guest is what
# the harness promises (controller serial, namespace sizes and LBA formats)
# and that data written through passthrough reaches the emulated device:
#   - ns1 (512-byte LBAs): fio's io_uring_cmd engine (IORING_OP_URING_CMD on
#     /dev/ng0n1) writes 8 blocks, reads them back with verify, and nvme-cli
#     reads them again through the passthrough ioctl;
#   - ns2 (4096-byte LBAs): `nvme write` / `nvme read` on /dev/ng0n2.
# Both ranges are registered as `pattern` expectations, which the host checks
# in the image files after the guest exits.
set -euo pipefail

skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
step() { echo "--- $*"; }

[[ "${RINGLINE_IN_QEMU:-}" == 1 ]] || skip "not inside the QEMU NVMe guest (run scripts/nvme-qemu-test.sh)"
for tool in nvme fio python3; do
  command -v "$tool" >/dev/null || skip "$tool is not installed on the host (the guest runs it from the host's root)"
done

work=$(mktemp -d)
# The pattern of the contract: byte i of a range is (SEED + i*131) % 251.
pattern_file() { # FILE LENGTH SEED
  python3 -c 'import sys
n, seed = int(sys.argv[2]), int(sys.argv[3])
open(sys.argv[1], "wb").write(bytes((seed + i * 131) % 251 for i in range(n)))' "$1" "$2" "$3"
}

step "nvme list"
nvme list

step "nvme id-ctrl $RINGLINE_NVME_CTRL -o json"
nvme id-ctrl "$RINGLINE_NVME_CTRL" -o json >"$work/id-ctrl.json"
python3 - "$work/id-ctrl.json" "$RINGLINE_NVME_SERIAL" <<'EOF'
import json, sys
ctrl = json.load(open(sys.argv[1]))
sn, mn = ctrl["sn"].strip(), ctrl["mn"].strip()
print(f"serial {sn!r}, model {mn!r}, vid 0x{ctrl['vid']:04x}, mdts {ctrl['mdts']}, nn {ctrl['nn']}")
if sn != sys.argv[2]:
    sys.exit(f"FAIL: controller serial is {sn!r}, expected {sys.argv[2]!r}")
EOF

for n in 1 2; do
  dev_var=RINGLINE_NVME_NS$n bytes_var=RINGLINE_NVME_NS${n}_BYTES lba_var=RINGLINE_NVME_NS${n}_LBA
  step "nvme id-ns ${!dev_var} -o json (expect ${!bytes_var} bytes, ${!lba_var}-byte LBAs)"
  nvme id-ns "${!dev_var}" -o json >"$work/id-ns$n.json"
  python3 - "$work/id-ns$n.json" "${!bytes_var}" "${!lba_var}" <<'EOF'
import json, sys
ns = json.load(open(sys.argv[1]))
lba = 1 << ns["lbafs"][ns["flbas"] & 0xF]["ds"]
size = ns["nsze"] * lba
print(f"nsze {ns['nsze']} x {lba} bytes = {size} bytes")
if (size, lba) != (int(sys.argv[2]), int(sys.argv[3])):
    sys.exit(f"FAIL: namespace is {size} bytes with {lba}-byte LBAs, expected {sys.argv[2]} / {sys.argv[3]}")
EOF
done

# ---- ns1: fio io_uring_cmd (IORING_OP_URING_CMD) write + verified read-back.
# fio repeats a buffer_pattern (at most 512 bytes) in every I/O, so each job
# writes one 512-byte block with the slice of the pattern that belongs there;
# together the blocks form one contiguous expectation.
NS1_OFF=$((3 * 1024 * 1024 + 7 * 512)) NS1_BLOCKS=8 NS1_SEED=17
NS1_LEN=$((NS1_BLOCKS * 512))
python3 - "$work" "$RINGLINE_NVME_NS1" "$NS1_OFF" "$NS1_BLOCKS" "$NS1_SEED" <<'EOF'
import sys
work, dev, off, blocks, seed = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
for mode in ("write", "read"):
    jobs = [f"[global]\nioengine=io_uring_cmd\ncmd_type=nvme\nfilename={dev}\nbs=512\n"
            f"size=512\niodepth=1\nrw={mode}\n"]
    if mode == "read":
        jobs.append("verify=pattern\nverify_fatal=1\n")
    for k in range(blocks):
        block = bytes((seed + (k * 512 + i) * 131) % 251 for i in range(512))
        key = "buffer_pattern" if mode == "write" else "verify_pattern"
        jobs.append(f"[{mode}{k}]\noffset={off + k * 512}\n{key}=0x{block.hex()}\n")
    open(f"{work}/{mode}.fio", "w").write("".join(jobs))
EOF
fio_run() { # MODE: run $work/MODE.fio, print each job's bytes and error
  fio --output-format=json "$work/$1.fio" >"$work/fio-$1.json" || { cat "$work/fio-$1.json"; return 1; }
  python3 - "$work/fio-$1.json" "$1" <<'EOF'
import json, sys
for job in json.load(open(sys.argv[1]))["jobs"]:
    print(f"  {job['jobname']}: {job[sys.argv[2]]['io_bytes']} bytes, error {job['error']}")
EOF
}
step "fio io_uring_cmd: write $NS1_BLOCKS x 512 B at byte $NS1_OFF of $RINGLINE_NVME_NS1"
fio_run write || fail "fio io_uring_cmd write failed"
step "fio io_uring_cmd: read back with verify=pattern"
fio_run read || fail "fio io_uring_cmd read-back/verify failed"

step "nvme read (passthrough ioctl): the same range, compared byte for byte"
pattern_file "$work/ns1.want" "$NS1_LEN" "$NS1_SEED"
nvme read "$RINGLINE_NVME_NS1" --start-block=$((NS1_OFF / 512)) --block-count=$((NS1_BLOCKS - 1)) \
  --data-size="$NS1_LEN" --data="$work/ns1.got"
cmp "$work/ns1.want" "$work/ns1.got" || fail "nvme read of ns1 differs from what fio wrote"
echo "pattern 1 $NS1_OFF $NS1_LEN $NS1_SEED" >>"$RINGLINE_RESULTS_DIR/expect"
echo "  registered: pattern 1 $NS1_OFF $NS1_LEN $NS1_SEED"

# ---- ns2: nvme-cli write + read on the 4096-byte-LBA namespace.
NS2_LBA0=1000 NS2_BLOCKS=32 NS2_SEED=99
NS2_OFF=$((NS2_LBA0 * 4096)) NS2_LEN=$((NS2_BLOCKS * 4096))
step "nvme write: $NS2_BLOCKS x 4096 B at byte $NS2_OFF of $RINGLINE_NVME_NS2"
pattern_file "$work/ns2.want" "$NS2_LEN" "$NS2_SEED"
nvme write "$RINGLINE_NVME_NS2" --start-block="$NS2_LBA0" --block-count=$((NS2_BLOCKS - 1)) \
  --data-size="$NS2_LEN" --data="$work/ns2.want"
nvme read "$RINGLINE_NVME_NS2" --start-block="$NS2_LBA0" --block-count=$((NS2_BLOCKS - 1)) \
  --data-size="$NS2_LEN" --data="$work/ns2.got"
cmp "$work/ns2.want" "$work/ns2.got" || fail "nvme read of ns2 differs from what nvme write wrote"
echo "pattern 2 $NS2_OFF $NS2_LEN $NS2_SEED" >>"$RINGLINE_RESULTS_DIR/expect"
echo "  registered: pattern 2 $NS2_OFF $NS2_LEN $NS2_SEED"

rm -rf "$work"
echo "passthrough smoke test passed"
