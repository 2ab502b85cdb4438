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

	"github.com/paasmeter/paasmeter/runtime/cgroups/cgroupstest"

	corev1 "k8s.io/api/core/v1"

	"github.com/paasmeter/paasmeter/runtime/kube"
)

// The test node's kubelet uses the cgroupfs driver (docs/kubernetes.md):
// its pods' cgroups are kubepods/<qos>/pod<uid>, each container's the
// container's id below.
const driver = kube.Cgroupfs

// podCPU follows a pod's cgroup CPU counter as the kernel keeps it, read
// every few milliseconds until the kubelet removes the cgroup once the pod
// is over. The pod's cgroup outlives its containers, so for a pod of one
// run its last reading after that run's exit is the run's whole CPU time
// (with the pause process's few microseconds): the truth the agent's bill
// is held to. The exit shows as the run's own cgroup, a child of the pod's
// beside the sandbox's, going away with it.
type podCPU struct {
	mu   sync.Mutex
	last uint64
	// exited: the run's cgroup went; settled: last was read after that,
	// and closed is closed then.
	exited, settled bool
	closed          chan struct{}
	err             error
	stop            context.CancelFunc
	done            chan struct{}
}

// followCPU starts following pod's cgroup under the CPU hierarchy root.
func followCPU(root string, pod *corev1.Pod) *podCPU {
	dir := filepath.Join(root, kube.PodCgroup(driver, pod.Status.QOSClass, string(pod.UID)))
	ctx, stop := context.WithCancel(context.Background())
	c := &podCPU{stop: stop, done: make(chan struct{}), closed: make(chan struct{})}
	go func() {
		defer close(c.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		most := 0 // child cgroups seen at once: the sandbox's and the run's
		for {
			kids, err := children(dir)
			var v uint64
			if err == nil {
				v, err = cgroupstest.CPUNanos(dir)
			}
			c.mu.Lock()
			switch {
			case err == nil:
				if most >= 2 && kids < most {
					c.exited = true
				}
				most = max(most, kids)
				if c.exited && !c.settled {
					close(c.closed)
				}
				c.last, c.settled = v, c.exited
			case !errors.Is(err, fs.ErrNotExist):
				c.err = err
			}
			// Removed by the kubelet once the run is over: the last reading stands.
			over := c.err != nil || (errors.Is(err, fs.ErrNotExist) && most > 0)
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

// children counts the cgroups below dir.
func children(dir string) (int, error) {
	ents, err := os.ReadDir(dir)
	n := 0
	for _, e := range ents {
		if e.IsDir() {
			n++
		}
	}
	return n, err
}

// final waits, within a deadline, for a reading after the run's exit, then
// stops following and returns the last reading.
func (c *podCPU) final(within time.Duration) (uint64, error) {
	select {
	case <-c.closed:
	case <-c.done:
	case <-time.After(within):
	}
	c.stop()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.err != nil:
		return 0, c.err
	case !c.settled:
		return 0, fmt.Errorf("the pod's cgroup was not read after its run's exit (exit seen: %v)", c.exited)
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
