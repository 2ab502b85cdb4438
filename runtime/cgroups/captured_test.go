package cgroups_test

import (
	"testing"

	"github.com/paasmeter/paasmeter/runtime/cgroups"
)

// The trees in testdata/captured: v1/ was copied from the cgroup files of a real
// container on the test engine (busybox, --memory 256m --cpus 1.5, a CPU loop
// then sleep); the v2 trees carry its figures in the v2 formats of the
// fixtures beside them (testdata/README.md says how they were made).
const capturedID = "1511eeb98da8dd3723308cadd6fc3fe6e86357f30037261948c909f7ef2792a5"

// captured is what the real container's v1 files say.
var captured = cgroups.Stats{
	CPUUsageNs:            648_765_004,
	CPUPeriods:            10,
	MemoryUsageBytes:      716_800,
	MemoryWorkingSetBytes: 716_800,
	MemoryLimitBytes:      268_435_456,
	MemoryPeakBytes:       3_547_136,
	Pids:                  1,
}

func TestACapturedV1TreeAndItsV2RenderingsGiveTheSameFigures(t *testing.T) {
	trees := map[string]string{
		"the v1 tree captured from a real container":   "docker/" + capturedID,
		"its v2 rendering under the cgroupfs driver":   "docker/" + capturedID,
		"its v2 rendering in a systemd scope":          "system.slice/docker-" + capturedID + ".scope",
		"its v2 rendering in a kubepods burstable pod": "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1316edb4_de60_44aa_8ad3_4030c0c6e43a.slice/cri-containerd-" + capturedID + ".scope",
	}
	roots := map[string]string{
		"the v1 tree captured from a real container":   "testdata/captured/v1",
		"its v2 rendering under the cgroupfs driver":   "testdata/captured/v2-cgroupfs",
		"its v2 rendering in a systemd scope":          "testdata/captured/v2-systemd",
		"its v2 rendering in a kubepods burstable pod": "testdata/captured/v2-kubepods",
	}
	for name, path := range trees {
		t.Run(name, func(t *testing.T) {
			r, err := cgroups.NewReader(roots[name])
			if err != nil {
				t.Fatal(err)
			}
			found, err := r.FindContainer(capturedID, "")
			if err != nil || found != path {
				t.Fatalf("FindContainer = %q, %v; want %q", found, err, path)
			}
			got, err := r.Read(path)
			if err != nil {
				t.Fatal(err)
			}
			want := captured
			if r.Version() == cgroups.V2 {
				want.CPUUsageNs -= want.CPUUsageNs % 1000 // v2 counts CPU in µs
			}
			if got != want {
				t.Errorf("read\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}
