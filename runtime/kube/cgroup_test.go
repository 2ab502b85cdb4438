package kube

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/paasmeter/paasmeter/runtime/cgroups"
)

// The fixture trees under testdata/cgroups (testdata/README.md) hold one
// container of one pod in every layout, with the counters of
// runtime/cgroups' fixture; the pod's cgroup has 12,345,000 ns of CPU more:
// its sandbox's.
const (
	fixtureUID = "2314f9ac-25d9-4caf-a3a1-670dddbd8fd2"
	fixtureID  = "7a77fbaa3f164174b14a6c54f835a7bd70403aa6949768af034224d18b0a7899"

	fixtureContainerCPU = 3_712_345_000
	fixturePodCPU       = 3_724_690_000
	fixtureWorkingSet   = 52_428_800
)

func TestEveryLayoutFindsThePodAndTheContainerAndReadsTheirCounters(t *testing.T) {
	for _, tc := range []struct {
		tree, runtime string
		qos           corev1.PodQOSClass
		driver        Driver
		pod, ctr      string
	}{
		// What the test cluster makes: v1, cgroupfs, containerd.
		{"v1-cgroupfs", Containerd, corev1.PodQOSBurstable, Cgroupfs,
			"kubepods/burstable/pod" + fixtureUID, "kubepods/burstable/pod" + fixtureUID + "/" + fixtureID},
		{"v1-cgroupfs-guaranteed", Containerd, corev1.PodQOSGuaranteed, Cgroupfs,
			"kubepods/pod" + fixtureUID, "kubepods/pod" + fixtureUID + "/" + fixtureID},
		{"v1-systemd-crio", CRIO, corev1.PodQOSBestEffort, Systemd,
			"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod2314f9ac_25d9_4caf_a3a1_670dddbd8fd2.slice",
			"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod2314f9ac_25d9_4caf_a3a1_670dddbd8fd2.slice/crio-" + fixtureID + ".scope"},
		{"v2-systemd-containerd", Containerd, corev1.PodQOSBurstable, Systemd,
			"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2314f9ac_25d9_4caf_a3a1_670dddbd8fd2.slice",
			"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2314f9ac_25d9_4caf_a3a1_670dddbd8fd2.slice/cri-containerd-" + fixtureID + ".scope"},
		// OpenShift: v2, systemd, CRI-O (conmon's scope beside the container's).
		{"v2-systemd-crio", CRIO, corev1.PodQOSGuaranteed, Systemd,
			"kubepods.slice/kubepods-pod2314f9ac_25d9_4caf_a3a1_670dddbd8fd2.slice",
			"kubepods.slice/kubepods-pod2314f9ac_25d9_4caf_a3a1_670dddbd8fd2.slice/crio-" + fixtureID + ".scope"},
		{"v2-cgroupfs", Containerd, corev1.PodQOSBestEffort, Cgroupfs,
			"kubepods/besteffort/pod" + fixtureUID, "kubepods/besteffort/pod" + fixtureUID + "/" + fixtureID},
	} {
		t.Run(tc.tree, func(t *testing.T) {
			if got := PodCgroup(tc.driver, tc.qos, fixtureUID); got != tc.pod {
				t.Errorf("PodCgroup = %s, want %s", got, tc.pod)
			}
			if got := ContainerCgroup(tc.driver, tc.runtime, tc.pod, fixtureID); got != tc.ctr {
				t.Errorf("ContainerCgroup = %s, want %s", got, tc.ctr)
			}
			r, err := cgroups.NewReader("testdata/cgroups/" + tc.tree)
			if err != nil {
				t.Fatal(err)
			}
			// The driver is found from the tree; a configured one is used as is.
			for _, d := range []Driver{"", tc.driver} {
				c := NewCgroups(r, d)
				p, err := c.Find(tc.qos, fixtureUID, tc.runtime+"://"+fixtureID)
				if err != nil {
					t.Fatal(err)
				}
				if p != (Paths{Pod: tc.pod, Container: tc.ctr}) {
					t.Fatalf("driver %q: Find = %+v", d, p)
				}
				if c.driver != tc.driver {
					t.Errorf("driver learnt: %q, want %q", c.driver, tc.driver)
				}
			}
			pod, err := r.Read(tc.pod)
			if err != nil {
				t.Fatal(err)
			}
			ctr, err := r.Read(tc.ctr)
			if err != nil {
				t.Fatal(err)
			}
			if ctr.CPUUsageNs != fixtureContainerCPU || pod.CPUUsageNs != fixturePodCPU {
				t.Errorf("CPU: container %d, pod %d; want %d, %d", ctr.CPUUsageNs, pod.CPUUsageNs, fixtureContainerCPU, fixturePodCPU)
			}
			if ctr.MemoryWorkingSetBytes != fixtureWorkingSet {
				t.Errorf("working set %d, want %d", ctr.MemoryWorkingSetBytes, fixtureWorkingSet)
			}
		})
	}
}

func TestAnExitedContainerLeavesItsPodCgroupAndAGonePodNothing(t *testing.T) {
	r, err := cgroups.NewReader("testdata/cgroups/v1-cgroupfs")
	if err != nil {
		t.Fatal(err)
	}
	c := NewCgroups(r, "")
	// Another container of the pod, whose own cgroup is gone.
	p, err := c.Find(corev1.PodQOSBurstable, fixtureUID, "containerd://0123456789abcdef")
	if !errors.Is(err, cgroups.ErrNotFound) || p.Pod != "kubepods/burstable/pod"+fixtureUID || p.Container != "" {
		t.Errorf("exited container: %+v, %v", p, err)
	}
	// The wrong QoS class is another path: no such pod.
	if p, err := c.Find(corev1.PodQOSBestEffort, fixtureUID, "containerd://"+fixtureID); !errors.Is(err, cgroups.ErrNotFound) || p != (Paths{}) {
		t.Errorf("gone pod: %+v, %v", p, err)
	}
	for _, bad := range []string{fixtureID, "containerd://", "containerd://a/b", "://x", "containerd://.."} {
		if _, err := c.Find(corev1.PodQOSBurstable, fixtureUID, bad); err == nil || errors.Is(err, cgroups.ErrNotFound) {
			t.Errorf("container id %q: %v, want a refusal", bad, err)
		}
	}
}
