package agent

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/paasmeter/paasmeter/internal/tlsconf"
	"github.com/paasmeter/paasmeter/runtime/kube"
	"github.com/paasmeter/paasmeter/runtime/tail"
)

// Config is the agent's part of the configuration file.
type Config struct {
	// Node is this node's name, as the collector's agent token is bound to it
	// (default: the host name).
	Node string `yaml:"node"`
	// CollectorURL is the collector's base URL, e.g. http://collector:8080.
	CollectorURL string `yaml:"collector_url"`
	// CollectorURLs, when set, are several collectors' base URLs, used
	// instead of CollectorURL: the shipper moves to the next when the one in
	// use fails (runtime/ship).
	CollectorURLs []string `yaml:"collector_urls"`
	// TokenFile holds the agent's bearer token (PAASMETER_AGENT_TOKEN overrides it).
	TokenFile string `yaml:"token_file"`
	// Kind is the node's kind: KindDocker (the agent follows a Docker
	// Engine's labelled containers) or KindKubernetes (a DaemonSet's pod
	// follows the pods the kubelet runs on its node, Kubernetes).
	Kind string `yaml:"kind"`
	// Kubernetes is the Kubernetes node kind's configuration.
	Kubernetes kube.Config `yaml:"kubernetes"`
	// DockerHost is the engine's API address; empty means the usual defaults.
	DockerHost string `yaml:"docker_host"`
	// CgroupRoot and ProcRoot are where cgroup files and /proc are read.
	CgroupRoot string `yaml:"cgroup_root"`
	ProcRoot   string `yaml:"proc_root"`
	// SpoolDir holds the durable spool, its dead letters and the meter state.
	SpoolDir string `yaml:"spool_dir"`
	// SpoolMaxBytes bounds the spool on disk; beyond it new records are refused
	// loudly (metric, log), never dropped silently.
	SpoolMaxBytes int64 `yaml:"spool_max_bytes"`
	// SampleInterval is how often running containers' cgroups are read.
	SampleInterval time.Duration `yaml:"sample_interval"`
	// Window is the length of a usage window (aligned to the clock).
	Window time.Duration `yaml:"window"`
	// StateHorizon is how far back the agent's memory reaches: a container
	// first seen running is billed from its start if that is within it (its
	// counters began at zero with it), else from first sight; engine events
	// are replayed from the last one handled if that is within it; closed
	// runs are remembered that long, so none is billed twice.
	StateHorizon time.Duration `yaml:"state_horizon"`
	// BatchSize is the most records shipped in one request.
	BatchSize int `yaml:"batch_size"`
	// AdminListen serves the agent's /metrics: loopback only, unless AdminTLS is set.
	AdminListen string `yaml:"admin_listen"`
	// TLS is how the agent reaches an https collector_url: the CAs it
	// trusts, and the client certificate naming this node (mutual TLS), with
	// which the token becomes optional.
	TLS tlsconf.ClientConfig `yaml:"tls"`
	// AdminTLS is the admin listener's.
	AdminTLS tlsconf.ServerConfig `yaml:"admin_tls"`
	// PlatformSpec is the platform spec file (runtime/spec) whose containers
	// this node runs; empty means the agent only meters what others start.
	PlatformSpec string `yaml:"platform_spec"`
	// SuperviseInterval is the time between two supervision passes.
	SuperviseInterval time.Duration `yaml:"supervise_interval"`
	// RenamedReconcileInterval is supervise_interval's name before 2026-12-07,
	// read only to refuse it with a message naming the new key: in one file,
	// "reconcile" is now billing's ledger check alone.
	RenamedReconcileInterval time.Duration `yaml:"reconcile_interval"`
	// StopTimeout is how long a replica has to exit after SIGTERM before it is killed.
	StopTimeout time.Duration `yaml:"stop_timeout"`
	// Logs is how the containers' output is shipped (runtime/tail).
	Logs tail.Config `yaml:"logs"`
}

// The node kinds (Config.Kind).
const (
	KindDocker     = "docker"
	KindKubernetes = "kubernetes"
)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Kind:           KindDocker,
		Kubernetes:     kube.DefaultConfig(),
		CollectorURL:   "http://127.0.0.1:8080",
		CgroupRoot:     "/sys/fs/cgroup",
		ProcRoot:       "/proc",
		SpoolDir:       "spool",
		SpoolMaxBytes:  1 << 30,
		SampleInterval: 10 * time.Second,
		Window:         time.Minute,
		StateHorizon:   24 * time.Hour,
		BatchSize:      1000,
		AdminListen:    "127.0.0.1:9100",

		SuperviseInterval: 2 * time.Second,
		StopTimeout:       10 * time.Second,
		Logs:              tail.DefaultConfig(),
	}
}

// URLs returns the collectors the agent ships to: collector_urls when set,
// else collector_url.
func (c *Config) URLs() []string {
	if len(c.CollectorURLs) > 0 {
		return c.CollectorURLs
	}
	return []string{c.CollectorURL}
}

// maxCollectorURLs bounds collector_urls: a shipper tries each in turn.
const maxCollectorURLs = 16

// Validate reports what is wrong with c, naming each field.
func (c *Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.CollectorURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("collector_url: %q must be an http(s) URL", c.CollectorURL))
	}
	if len(c.CollectorURLs) > maxCollectorURLs {
		errs = append(errs, fmt.Errorf("collector_urls: %d URLs, at most %d", len(c.CollectorURLs), maxCollectorURLs))
	}
	var scheme string // collector_urls[0]'s
	for i, raw := range c.CollectorURLs {
		u, err := url.Parse(raw)
		if i == 0 && err == nil {
			scheme = u.Scheme
		}
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			errs = append(errs, fmt.Errorf("collector_urls[%d]: %q must be an http(s) URL", i, raw))
		case slices.Index(c.CollectorURLs, raw) < i:
			errs = append(errs, fmt.Errorf("collector_urls[%d]: %q is listed twice", i, raw))
		case u.Scheme != scheme:
			// One TLS client serves them all: https everywhere or nowhere.
			errs = append(errs, fmt.Errorf("collector_urls[%d]: %q must have the scheme of collector_urls[0] (%q)", i, raw, c.CollectorURLs[0]))
		}
	}
	switch c.Kind {
	case KindDocker:
	case KindKubernetes:
		if err := c.Kubernetes.Validate(); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				errs = append(errs, fmt.Errorf("kubernetes.%s", line))
			}
		}
		if c.PlatformSpec != "" {
			errs = append(errs, errors.New("platform_spec: must be empty with kind kubernetes: the kubelet runs the containers"))
		}
	default:
		errs = append(errs, fmt.Errorf("kind: %q must be %s or %s", c.Kind, KindDocker, KindKubernetes))
	}
	if c.SpoolDir == "" {
		errs = append(errs, errors.New("spool_dir: is required"))
	}
	if c.SpoolMaxBytes < 1<<20 {
		errs = append(errs, errors.New("spool_max_bytes: must be at least 1 MiB"))
	}
	if c.SampleInterval < time.Second {
		errs = append(errs, fmt.Errorf("sample_interval: %s is below 1s", c.SampleInterval))
	}
	if c.Window < time.Second || c.Window > time.Hour || time.Hour%c.Window != 0 {
		errs = append(errs, fmt.Errorf("window: %s must divide an hour (e.g. 60s)", c.Window))
	}
	if c.StateHorizon < c.Window {
		errs = append(errs, fmt.Errorf("state_horizon: %s is shorter than the window", c.StateHorizon))
	}
	if c.SampleInterval > c.Window {
		errs = append(errs, errors.New("sample_interval: must not be longer than window"))
	}
	if c.BatchSize <= 0 {
		errs = append(errs, errors.New("batch_size: must be positive"))
	}
	if c.RenamedReconcileInterval != 0 {
		errs = append(errs, errors.New("reconcile_interval: renamed supervise_interval (the time between two passes of the container supervisor)"))
	}
	if c.SuperviseInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("supervise_interval: %s is below 100ms", c.SuperviseInterval))
	}
	if c.StopTimeout < time.Second {
		errs = append(errs, fmt.Errorf("stop_timeout: %s is below 1s", c.StopTimeout))
	}
	if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
		errs = append(errs, fmt.Errorf("admin_listen: %q is not host:port", c.AdminListen))
	} else if !tlsconf.IsLoopback(c.AdminListen) && !c.AdminTLS.Enabled() {
		errs = append(errs, fmt.Errorf("admin_listen: %q is not a loopback address: set admin_tls (cert_file, key_file) to listen beyond this host", c.AdminListen))
	}
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("tls.%w", err))
	}
	if first := c.URLs()[0]; c.TLS.Configured() && strings.HasPrefix(first, "http:") {
		errs = append(errs, fmt.Errorf("tls: set, but the collector's URL %q is http: use https", first))
	}
	if err := c.AdminTLS.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("admin_tls.%w", err))
	}
	if c.AdminTLS.ClientCAFile != "" {
		errs = append(errs, errors.New("admin_tls.client_ca_file: not supported on the agent's admin listener"))
	}
	if err := c.Logs.Validate(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			errs = append(errs, fmt.Errorf("logs.%s", line))
		}
	}
	return errors.Join(errs...)
}
