// Package spec is the platform's desired state: which containers of which
// institution should run where, with which limits, health checks, restart
// policy and volumes, within each institution's quota. The runtime supervisor converges
// the Docker Engine towards it.
package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/paasmeter/paasmeter/usage"
)

// Spec is the whole platform spec file.
type Spec struct {
	Institutions []Institution `yaml:"institutions"`
}

// Institution is one tenant with its quota and projects.
type Institution struct {
	ID       string    `yaml:"id"`
	Name     string    `yaml:"name"`
	Quota    Quota     `yaml:"quota"`
	Projects []Project `yaml:"projects"`
}

// Quota bounds what an institution's spec may ask for, summed over every
// replica of every app and every volume.
type Quota struct {
	CPU        Millicores `yaml:"cpu"`
	Memory     Bytes      `yaml:"memory"`
	Containers int        `yaml:"containers"`
	VolumeSize Bytes      `yaml:"volume_size"`
}

// Project groups apps.
type Project struct {
	ID   string `yaml:"id"`
	Apps []App  `yaml:"apps"`
}

// App is one application (or micro-service) in one environment.
type App struct {
	ID        string            `yaml:"id"`
	Env       usage.Environment `yaml:"env"`
	Image     string            `yaml:"image"`
	Command   []string          `yaml:"command"`
	Replicas  int               `yaml:"replicas"`
	Resources Resources         `yaml:"resources"`
	EnvVars   map[string]string `yaml:"env_vars"`
	Ports     []Port            `yaml:"ports"`
	Health    *Health           `yaml:"health"`
	Restart   Restart           `yaml:"restart"`
	// Capabilities are the only ones kept: every other is dropped.
	Capabilities []string `yaml:"capabilities"`
	ReadOnlyRoot bool     `yaml:"read_only_root"`
	Volumes      []Volume `yaml:"volumes"`
}

// Resources are the limits every replica runs with; all are required.
type Resources struct {
	CPU    Millicores `yaml:"cpu"`
	Memory Bytes      `yaml:"memory"`
	Pids   int64      `yaml:"pids"`
}

// Port is a container port the app listens on.
type Port struct {
	Container int    `yaml:"container"`
	Protocol  string `yaml:"protocol"`
}

// Health is how the platform probes each replica from outside.
type Health struct {
	HTTP     *HTTPProbe    `yaml:"http"`
	TCP      *TCPProbe     `yaml:"tcp"`
	Exec     []string      `yaml:"exec"`
	Interval time.Duration `yaml:"interval"`
	Timeout  time.Duration `yaml:"timeout"`
	Retries  int           `yaml:"retries"`
}

// HTTPProbe passes on a 2xx or 3xx answer.
type HTTPProbe struct {
	Path string `yaml:"path"`
	Port int    `yaml:"port"`
}

// TCPProbe passes when the port accepts a connection.
type TCPProbe struct {
	Port int `yaml:"port"`
}

// Restart says what happens when a replica exits.
type Restart struct {
	// Policy is always, on-failure or never.
	Policy string `yaml:"policy"`
	// Backoff doubles from Backoff to MaxBackoff between restarts.
	Backoff    time.Duration `yaml:"backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// MaxAttempts gives up after this many restarts in a row (0: never gives up).
	MaxAttempts int `yaml:"max_attempts"`
}

// Volume is a persistent volume with its provisioned (billed) size.
type Volume struct {
	Name string `yaml:"name"`
	Size Bytes  `yaml:"size"`
	Path string `yaml:"path"`
}

// Error lists every problem of a spec file, each with its line and field.
type Error struct {
	File     string
	Problems []Problem
}

// Problem is one thing wrong in a spec file.
type Problem struct {
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problem(s)", e.File, len(e.Problems))
	for _, p := range e.Problems {
		fmt.Fprintf(&b, "\n  %s:%d: %s: %s", e.File, p.Line, p.Field, p.Msg)
	}
	return b.String()
}

// Load reads and parses the spec file at path (see Parse).
func Load(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// Parse reads a spec file (name is used in messages), applies the defaults and
// validates it, quotas included. Unknown keys are errors.
func Parse(data []byte, name string) (*Spec, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var s Spec
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s.defaults()
	lines := map[string]int{}
	if len(root.Content) > 0 {
		index(root.Content[0], "", lines)
	}
	v := validator{lines: lines}
	s.validate(&v)
	if len(v.problems) > 0 {
		sort.SliceStable(v.problems, func(i, j int) bool { return v.problems[i].Line < v.problems[j].Line })
		return nil, &Error{File: name, Problems: v.problems}
	}
	return &s, nil
}

// index records the line of every node under its path, e.g.
// institutions[0].projects[1].apps[0].replicas.
func index(n *yaml.Node, path string, lines map[string]int) {
	lines[path] = n.Line
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path != "" {
				p = path + "." + p
			}
			lines[p] = n.Content[i].Line
			index(n.Content[i+1], p, lines)
			lines[p] = n.Content[i].Line
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			index(c, path+"["+strconv.Itoa(i)+"]", lines)
		}
	}
}

type validator struct {
	lines    map[string]int
	problems []Problem
}

// add reports a problem at field, located at the nearest enclosing node the
// file has (a missing field is reported where its parent is).
func (v *validator) add(field, format string, args ...any) {
	line := 0
	for p := field; p != ""; {
		if l, ok := v.lines[p]; ok {
			line = l
			break
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	v.problems = append(v.problems, Problem{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (s *Spec) defaults() {
	for i := range s.Institutions {
		for j := range s.Institutions[i].Projects {
			for k := range s.Institutions[i].Projects[j].Apps {
				a := &s.Institutions[i].Projects[j].Apps[k]
				if a.Replicas == 0 {
					a.Replicas = 1
				}
				if a.Restart.Policy == "" {
					a.Restart.Policy = "on-failure"
				}
				if a.Restart.Backoff == 0 {
					a.Restart.Backoff = time.Second
				}
				if a.Restart.MaxBackoff == 0 {
					a.Restart.MaxBackoff = time.Minute
				}
				if h := a.Health; h != nil {
					if h.Interval == 0 {
						h.Interval = 10 * time.Second
					}
					if h.Timeout == 0 {
						h.Timeout = 2 * time.Second
					}
					if h.Retries == 0 {
						h.Retries = 3
					}
				}
				for p := range a.Ports {
					if a.Ports[p].Protocol == "" {
						a.Ports[p].Protocol = "tcp"
					}
				}
			}
		}
	}
}

func (s *Spec) validate(v *validator) {
	seen := map[string]bool{}
	if len(s.Institutions) == 0 {
		v.add("institutions", "the spec lists no institution")
	}
	for i, inst := range s.Institutions {
		ip := fmt.Sprintf("institutions[%d]", i)
		name(v, ip+".id", inst.ID)
		if seen[inst.ID] {
			v.add(ip+".id", "%q is listed twice", inst.ID)
		}
		seen[inst.ID] = true
		projects := map[string]bool{}
		for j, p := range inst.Projects {
			pp := fmt.Sprintf("%s.projects[%d]", ip, j)
			name(v, pp+".id", p.ID)
			if projects[p.ID] {
				v.add(pp+".id", "%q is listed twice in %s", p.ID, inst.ID)
			}
			projects[p.ID] = true
			apps := map[string]bool{}
			for k := range p.Apps {
				a := &p.Apps[k]
				ap := fmt.Sprintf("%s.apps[%d]", pp, k)
				key := a.ID + "/" + string(a.Env)
				if apps[key] {
					v.add(ap+".id", "%q in %s is listed twice", a.ID, a.Env)
				}
				apps[key] = true
				a.validate(v, ap)
			}
		}
		q, want := inst.Quota, inst.Requested()
		qp := ip + ".quota"
		if q.CPU == 0 || q.Memory == 0 || q.Containers == 0 {
			v.add(qp, "cpu, memory and containers are required: every institution has a quota")
			continue
		}
		over := func(field, what string, want, limit uint64, show func(uint64) string) {
			if want > limit {
				v.add(qp+"."+field, "over the %s quota: %s asks for %s, %s more than its quota of %s", what, inst.ID, show(want), show(want-limit), show(limit))
			}
		}
		over("cpu", "CPU", uint64(want.CPU), uint64(q.CPU), func(x uint64) string { return Millicores(x).String() + " CPU" })
		over("memory", "memory", uint64(want.Memory), uint64(q.Memory), func(x uint64) string { return Bytes(x).String() })
		over("containers", "containers", uint64(want.Containers), uint64(q.Containers), func(x uint64) string { return strconv.FormatUint(x, 10) })
		over("volume_size", "volume space", uint64(want.VolumeSize), uint64(q.VolumeSize), func(x uint64) string { return Bytes(x).String() })
	}
}

// Requested sums what the institution's apps ask for, every replica and
// volume counted, in the terms of its quota.
func (inst *Institution) Requested() Quota {
	var q Quota
	for _, p := range inst.Projects {
		for _, a := range p.Apps {
			q.CPU += Millicores(a.Replicas) * a.Resources.CPU
			q.Memory += Bytes(a.Replicas) * a.Resources.Memory
			q.Containers += a.Replicas
			for _, vl := range a.Volumes {
				q.VolumeSize += vl.Size
			}
		}
	}
	return q
}

func name(v *validator, field, s string) {
	if len(usage.ValidateLabels(0, s, "p", "a", usage.EnvDev, "n")) > 0 {
		v.add(field, "%q must be 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit", s)
	}
}

func (a *App) validate(v *validator, ap string) {
	name(v, ap+".id", a.ID)
	if !a.Env.Valid() {
		v.add(ap+".env", "%q must be dev, test, acc or prod", a.Env)
	}
	if a.Image == "" {
		v.add(ap+".image", "is required")
	}
	if a.Replicas < 0 || a.Replicas > 100 {
		v.add(ap+".replicas", "%d must be between 1 and 100", a.Replicas)
	}
	if a.Resources.CPU == 0 {
		v.add(ap+".resources.cpu", "is required: every container runs with a CPU limit")
	}
	if a.Resources.Memory < 4<<20 {
		v.add(ap+".resources.memory", "is required and at least 4Mi: every container runs with a memory limit")
	}
	if a.Resources.Pids <= 0 {
		v.add(ap+".resources.pids", "is required: every container runs with a pids limit")
	}
	for i, p := range a.Ports {
		if p.Container < 1 || p.Container > 65535 {
			v.add(fmt.Sprintf("%s.ports[%d].container", ap, i), "%d is not a port", p.Container)
		}
		if p.Protocol != "tcp" && p.Protocol != "udp" {
			v.add(fmt.Sprintf("%s.ports[%d].protocol", ap, i), "%q must be tcp or udp", p.Protocol)
		}
	}
	if h := a.Health; h != nil {
		kinds := 0
		if h.HTTP != nil {
			kinds++
			if h.HTTP.Port < 1 || h.HTTP.Port > 65535 || !strings.HasPrefix(h.HTTP.Path, "/") {
				v.add(ap+".health.http", "needs a port and a path starting with /")
			}
		}
		if h.TCP != nil {
			kinds++
			if h.TCP.Port < 1 || h.TCP.Port > 65535 {
				v.add(ap+".health.tcp.port", "%d is not a port", h.TCP.Port)
			}
		}
		if len(h.Exec) > 0 {
			kinds++
		}
		if kinds != 1 {
			v.add(ap+".health", "give exactly one of http, tcp or exec")
		}
		if h.Timeout >= h.Interval {
			v.add(ap+".health.timeout", "%s must be shorter than the interval %s", h.Timeout, h.Interval)
		}
	}
	switch a.Restart.Policy {
	case "always", "on-failure", "never":
	default:
		v.add(ap+".restart.policy", "%q must be always, on-failure or never", a.Restart.Policy)
	}
	if a.Restart.MaxBackoff < a.Restart.Backoff {
		v.add(ap+".restart.max_backoff", "must not be shorter than backoff")
	}
	if a.Restart.MaxAttempts < 0 {
		v.add(ap+".restart.max_attempts", "must not be negative")
	}
	for i, c := range a.Capabilities {
		if c == "" || strings.ToUpper(c) != c || c == "SYS_ADMIN" || c == "ALL" {
			v.add(fmt.Sprintf("%s.capabilities[%d]", ap, i), "%q is not a capability an app may keep", c)
		}
	}
	vols := map[string]bool{}
	for i, vl := range a.Volumes {
		vp := fmt.Sprintf("%s.volumes[%d]", ap, i)
		name(v, vp+".name", vl.Name)
		if vols[vl.Name] {
			v.add(vp+".name", "%q is listed twice", vl.Name)
		}
		vols[vl.Name] = true
		if vl.Size == 0 {
			v.add(vp+".size", "is required: a volume is billed by its provisioned size")
		}
		if !strings.HasPrefix(vl.Path, "/") {
			v.add(vp+".path", "%q must be an absolute path in the container", vl.Path)
		}
	}
}
