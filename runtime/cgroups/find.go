package cgroups

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// kubepodsDepth bounds the search below a kubepods root: QoS class, pod,
// container. Guaranteed pods skip the QoS level; anything deeper is inside a
// container and cannot be the container itself.
const kubepodsDepth = 3

// FindContainer returns the cgroup path, relative to the hierarchy roots, of
// the container with the given full id. cgroupParent is Docker's
// HostConfig.CgroupParent ("" for the default).
//
// It tries, in order, the Docker cgroupfs layout ("<parent or docker>/<id>";
// with a parent ending in ".slice", the systemd layout below that slice), the
// Docker systemd layout ("system.slice/docker-<id>.scope"), then searches the
// kubepods.slice (systemd) and kubepods (cgroupfs) trees for the container's
// directory ("<id>", or "cri-containerd-", "crio-" or "docker-<id>.scope"),
// since the pod uid in those paths is not known here.
// It returns an error wrapping ErrNotFound listing what it tried when none
// exists. On v1 the cpuacct hierarchy is searched: every container has a
// directory there.
//
// A container's path does not change while it runs, so the agent should
// resolve it once per container, not per sample; PathFromProc is the more
// reliable way when a pid of the container is known.
func (r *Reader) FindContainer(containerID string, cgroupParent string) (string, error) {
	if containerID == "" || containerID == "." || containerID == ".." || strings.ContainsAny(containerID, "/\x00") {
		return "", fmt.Errorf("invalid container id %q", containerID)
	}
	base := r.root
	if r.version == V1 {
		base = r.cpuacct
	}
	tried, err := layouts(containerID, cgroupParent)
	if err != nil {
		return "", err
	}
	for _, c := range tried {
		switch fi, err := os.Stat(filepath.Join(base, c)); {
		case err == nil && fi.IsDir():
			return c, nil
		case err != nil && !gone(err):
			return "", err
		}
	}
	for _, top := range []string{"kubepods.slice", "kubepods"} {
		var found []string
		if err := search(base, top, containerID, kubepodsDepth, &found); err != nil {
			return "", err
		}
		switch len(found) {
		case 0:
			tried = append(tried, top+"/**/"+containerID)
		case 1:
			return found[0], nil
		default:
			return "", fmt.Errorf("container id %q is ambiguous: %s", containerID, strings.Join(found, ", "))
		}
	}
	return "", fmt.Errorf("container %s: no cgroup below %s at %s: %w", containerID, base, strings.Join(tried, ", "), ErrNotFound)
}

// layouts gives the fixed paths where Docker puts a container's cgroup.
func layouts(id, parent string) ([]string, error) {
	scope := "docker-" + id + ".scope"
	if parent == "" {
		return []string{"docker/" + id, "system.slice/" + scope}, nil
	}
	if strings.HasSuffix(parent, ".slice") && !strings.Contains(parent, "/") {
		slice, err := expandSlice(parent)
		if err != nil {
			return nil, err
		}
		return []string{path.Join(slice, scope)}, nil
	}
	rel, err := relPath(parent)
	if err != nil {
		return nil, fmt.Errorf("cgroup parent: %w", err)
	}
	return []string{path.Join(rel, id)}, nil
}

// expandSlice turns a systemd slice name into its path, as the systemd cgroup
// driver does: each dash opens a level ("a-b.slice" is
// "a.slice/a-b.slice").
func expandSlice(slice string) (string, error) {
	name := strings.TrimSuffix(slice, ".slice")
	if name == "-" {
		return "", nil
	}
	if name == "" || strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-") || strings.Contains(name, "--") {
		return "", fmt.Errorf("invalid systemd slice %q", slice)
	}
	var dir, prefix string
	for part := range strings.SplitSeq(name, "-") {
		prefix += part
		dir = path.Join(dir, prefix+".slice")
		prefix += "-"
	}
	return dir, nil
}

// isContainerDir tells whether a directory below kubepods is the container's
// own cgroup. The name must be the id itself (cgroupfs driver) or a runtime's
// scope for it (systemd driver): a mere "contains" would also take CRI-O's
// crio-conmon-<id>.scope next to the container, and a short id could match a
// pod slice.
func isContainerDir(name, id string) bool {
	if name == id {
		return true
	}
	for _, runtime := range []string{"cri-containerd-", "crio-", "docker-"} {
		if name == runtime+id+".scope" {
			return true
		}
	}
	return false
}

// search collects the container directories for id below base/dir, at most
// depth levels down. It does not descend into a match: nothing below a
// container is the container.
func search(base, dir, id string, depth int, found *[]string) error {
	entries, err := os.ReadDir(filepath.Join(base, dir))
	if err != nil {
		if gone(err) {
			return nil // no such tree, or a pod that went away while we looked
		}
		return err
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		rel := path.Join(dir, e.Name())
		if isContainerDir(e.Name(), id) {
			*found = append(*found, rel)
			continue
		}
		if depth > 1 {
			if err := search(base, rel, id, depth-1, found); err != nil {
				return err
			}
		}
	}
	return nil
}

// PathFromProc returns the cgroup path of process pid, relative to the
// hierarchy roots, from <procRoot>/<pid>/cgroup: the path of the v1
// hierarchy holding cpuacct when there is one (v1 and hybrid hosts), else
// that of the v2 "0::" line. For a running container this is the most
// reliable resolution. The agent must run in the host's cgroup namespace: in
// its own, paths are relative to that namespace, so a container looks like
// the root cgroup (an error here) or like "/../..." (also an error).
func PathFromProc(procRoot string, pid int) (string, error) {
	if pid <= 0 {
		return "", fmt.Errorf("invalid pid %d", pid)
	}
	file := filepath.Join(procRoot, strconv.Itoa(pid), "cgroup")
	data, err := mandatory(file)
	if err != nil {
		return "", err
	}
	p, err := parseProcCgroup(file, data)
	if err != nil {
		return "", err
	}
	rel, err := relPath(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	return rel, nil
}

// ReadNetDev returns the bytes received and transmitted by the network
// namespace of process pid, from <procRoot>/<pid>/net/dev, summed over its
// interfaces except the loopback. A process that is gone gives an error
// wrapping ErrNotFound.
func ReadNetDev(procRoot string, pid int) (rx, tx uint64, err error) {
	if pid <= 0 {
		return 0, 0, fmt.Errorf("invalid pid %d", pid)
	}
	file := filepath.Join(procRoot, strconv.Itoa(pid), "net", "dev")
	data, err := mandatory(file)
	if err != nil {
		return 0, 0, err
	}
	return parseNetDev(file, data)
}

// RunParentsDir is where the paasmeter runtime puts the per-run cgroup parent
// of each container it starts: RunParentsDir/<run>.
const RunParentsDir = "paasmeter"

// RunParents lists the per-run cgroup parents that exist, as the paths
// containers name as their cgroup parent ("/paasmeter/<run>"). On v1 the
// cpuacct hierarchy is read: the CPU counter that outlives the container is
// there. No such directory means no parent, not an error.
func (r *Reader) RunParents() ([]string, error) {
	base := r.root
	if r.version == V1 {
		base = r.cpuacct
	}
	entries, err := os.ReadDir(filepath.Join(base, RunParentsDir))
	if gone(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list run cgroup parents: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, "/"+RunParentsDir+"/"+e.Name())
		}
	}
	return out, nil
}

// Busy reports whether the cgroup at path (as RunParents names it) holds
// another cgroup: a per-run parent holding one has a container (or another
// owner's cgroup) in it, and is in use.
func (r *Reader) Busy(path string) bool {
	base := r.root
	if r.version == V1 {
		base = r.cpuacct
	}
	rel, err := relPath(path)
	if err != nil {
		return false
	}
	entries, err := os.ReadDir(filepath.Join(base, rel))
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.IsDir() {
			return true
		}
	}
	return false
}

// Procs returns the processes in the cgroup at path (its cgroup.procs; on v1
// the cpuacct hierarchy's), as pids of the reader's PID namespace: only an
// agent in the host's (Kubernetes: hostPID) sees them as /proc does. A
// cgroup that is gone gives an error wrapping ErrNotFound.
func (r *Reader) Procs(path string) ([]int, error) {
	base := r.root
	if r.version == V1 {
		base = r.cpuacct
	}
	rel, err := relPath(path)
	if err != nil {
		return nil, err
	}
	file := filepath.Join(base, rel, "cgroup.procs")
	data, err := mandatory(file)
	if err != nil {
		return nil, err
	}
	return parseProcs(file, data)
}

// ProcStat is what /proc/<pid>/stat tells of a process that the agent uses.
type ProcStat struct {
	// PPid is its parent's pid.
	PPid int
	// Start is when it started, in clock ticks since the boot: of two
	// processes, the smaller started first.
	Start uint64
}

// ReadProcStat reads <procRoot>/<pid>/stat. A process that is gone gives an
// error wrapping ErrNotFound.
func ReadProcStat(procRoot string, pid int) (ProcStat, error) {
	if pid <= 0 {
		return ProcStat{}, fmt.Errorf("invalid pid %d", pid)
	}
	file := filepath.Join(procRoot, strconv.Itoa(pid), "stat")
	data, err := mandatory(file)
	if err != nil {
		return ProcStat{}, err
	}
	return parseProcStat(file, data)
}
