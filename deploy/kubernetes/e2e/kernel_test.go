package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/paasmeter/paasmeter/runtime/kube"
)

// The test node's kubelet uses the cgroupfs driver (docs/kubernetes.md):
// its pods' cgroups are kubepods/<qos>/pod<uid>, each container's the
// container's id below.
const driver = kube.Cgroupfs

// cpuRoot is the hierarchy that counts CPU time under root: the unified one
// on cgroup v2, cpuacct's on v1.
func cpuRoot(t *testing.T, root string) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return root
	}
	for _, d := range []string{"cpuacct", "cpu,cpuacct"} {
		if _, err := os.Stat(filepath.Join(root, d, "cpuacct.usage")); err == nil {
			return filepath.Join(root, d)
		}
	}
	t.Fatalf("no CPU accounting hierarchy under %s", root)
	return ""
}

// readCPU is the kernel's count of a cgroup's CPU time, in ns: v1's
// cpuacct.usage, v2's cpu.stat usage_usec.
func readCPU(dir string) (uint64, error) {
	if b, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage")); err == nil {
		return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			us, err := strconv.ParseUint(v, 10, 64)
			return us * 1000, err
		}
	}
	return 0, fmt.Errorf("%s: no usage_usec in cpu.stat", dir)
}

// podCPU follows a pod's cgroup CPU counter as the kernel keeps it, read
// every few milliseconds until the kubelet removes the cgroup once the pod
// is over. The pod's cgroup outlives its containers, so for a pod of one
// run its last reading after that run's exit is the run's whole CPU time
// (with the pause process's few milliseconds): the truth the agent's bill is
// held to.
type podCPU struct {
	mu   sync.Mutex
	last uint64
	at   time.Time
	err  error
	gone time.Time
	stop context.CancelFunc
	done chan struct{}
}

// followCPU starts following pod's cgroup under the CPU hierarchy root.
func followCPU(root string, pod *corev1.Pod) *podCPU {
	dir := filepath.Join(root, kube.PodCgroup(driver, pod.Status.QOSClass, string(pod.UID)))
	ctx, stop := context.WithCancel(context.Background())
	c := &podCPU{stop: stop, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			v, err := readCPU(dir)
			now := time.Now()
			c.mu.Lock()
			switch {
			case err == nil:
				c.last, c.at = v, now
			case errors.Is(err, fs.ErrNotExist) && !c.at.IsZero():
				// Removed by the kubelet: the last reading stands.
				c.gone = now
			case !errors.Is(err, fs.ErrNotExist):
				c.err = err
			}
			over := !c.gone.IsZero() || c.err != nil
			c.mu.Unlock()
			if over {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return c
}

// final stops following and returns the last reading, which must have been
// taken after the run finished (finished is the API server's time, whole
// seconds: the run ended before finished plus a second).
func (c *podCPU) final(finished time.Time) (uint64, error) {
	c.stop()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.err != nil:
		return 0, c.err
	case c.at.IsZero():
		return 0, errors.New("the pod's cgroup was never read")
	case c.at.Before(finished.Add(time.Second)):
		return 0, fmt.Errorf("the pod's cgroup was last read at %s, before its run's end (%s), and removed at %s",
			c.at.Format(time.RFC3339Nano), finished.Format(time.RFC3339), c.gone.Format(time.RFC3339Nano))
	}
	return c.last, nil
}

// killContainer SIGKILLs every process of a running container from the
// host, as the kernel's OOM killer or a crash would end it: nothing it
// holds in memory is flushed.
func killContainer(t *testing.T, root string, pod *corev1.Pod, container string) {
	t.Helper()
	var id string
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == container {
			id = cs.ContainerID
		}
	}
	rt, cid, err := kube.SplitContainerID(id)
	if err != nil {
		t.Fatalf("pod %s, container %s: %v", pod.Name, container, err)
	}
	dir := filepath.Join(root, kube.ContainerCgroup(driver, rt, kube.PodCgroup(driver, pod.Status.QOSClass, string(pod.UID)), cid))
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatalf("the processes of pod %s's %s: %v", pod.Name, container, err)
	}
	n := 0
	for f := range strings.FieldsSeq(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("%s/cgroup.procs: %q", dir, f)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("kill -9 %d: %v", pid, err)
		}
		n++
	}
	if n == 0 {
		t.Fatalf("pod %s's %s has no process to kill (%s)", pod.Name, container, dir)
	}
}
