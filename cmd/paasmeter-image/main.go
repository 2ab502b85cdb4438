// Command paasmeter-image writes container images FROM scratch as image
// archives (internal/ociimage), with no Docker daemon: the paasmeter image
// that `make image` builds around the static bin/paasmeter, and the busybox
// images the test cluster runs (scripts/k8s/up.sh: its pause image and the
// tests' workloads).
//
//	paasmeter-image -o bin/paasmeter-image.tar -ref localhost/paasmeter:v1 -paasmeter bin/paasmeter
//	paasmeter-image -o pause.tar -ref localhost/paasmeter-test/pause:1 -busybox /bin/busybox -- /bin/sleep 2147483647
//
// Arguments after the flags are the image's command.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/paasmeter/paasmeter/internal/ociimage"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "paasmeter-image:", err)
		os.Exit(1)
	}
}

// nonroot is the user the paasmeter image runs as unless a pod says
// otherwise (the agent's DaemonSet does: it reads the host's cgroups and pod
// logs). No file of the image needs root, and OpenShift's restricted-v2 runs
// it under an arbitrary UID anyway.
const nonroot = "65532:65532"

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("paasmeter-image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "the image archive to write")
	ref := fs.String("ref", "", "the image's name on the node, e.g. localhost/paasmeter:v1")
	paasmeter := fs.String("paasmeter", "", "the static paasmeter binary: the image runs it as /paasmeter")
	busybox := fs.String("busybox", "", "a static busybox: the image is busybox with its applets in /bin")
	version := fs.String("version", "", "the version the image's labels give")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *ref == "" || (*paasmeter == "") == (*busybox == "") {
		fs.Usage()
		return errors.New("-o, -ref and one of -paasmeter and -busybox are needed")
	}
	c := ociimage.Config{Ref: *ref, Cmd: fs.Args()}
	var files []ociimage.File
	if *paasmeter != "" {
		bin, err := ociimage.ReadStatic(*paasmeter)
		if err != nil {
			return err
		}
		// /tmp for SQLite's temporary files; the zoneinfo is in the binary
		// (time/tzdata) and every TLS root comes from the configuration.
		files = []ociimage.File{{Path: "/paasmeter", Mode: 0o755, Data: bin}, {Path: "/tmp", Mode: 0o1777, Dir: true}}
		c.Entrypoint, c.User = []string{"/paasmeter"}, nonroot
		c.Labels = map[string]string{
			"org.opencontainers.image.title":       "paasmeter",
			"org.opencontainers.image.description": "Observability and metering hub of a multi-tenant container platform",
			"org.opencontainers.image.version":     *version,
		}
	} else {
		var err error
		if files, err = ociimage.Busybox(*busybox); err != nil {
			return err
		}
		c.Env = []string{"PATH=/bin"}
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	// Written beside, then renamed: a half-written archive never stands
	// where a later step would import it.
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".paasmeter-image-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := ociimage.Write(tmp, c, files); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// An image is no secret: the archive is readable as any build output.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), *out)
}
