// Package image builds the container images paasmeter runs where no registry
// is reachable: FROM scratch around the host's static busybox, with its
// applets installed and a few files added. The tests' busybox image and the
// demo platform's image (`paasmeter up`) are both made here.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	dimage "github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// HostBusybox is where the static busybox (Debian's busybox-static) is read from.
const HostBusybox = "/bin/busybox"

// DemoTag is the image of the example platform (examples/platform.yaml).
const DemoTag = "paasmeter-demo:1"

// Engine is the part of the Docker Engine API that builds and finds images;
// *client.Client has it.
type Engine interface {
	ImageBuild(ctx context.Context, buildContext io.Reader, options build.ImageBuildOptions) (build.ImageBuildResponse, error)
	ImageInspect(ctx context.Context, imageID string, opts ...client.ImageInspectOption) (dimage.InspectResponse, error)
}

// File is a file added to the image.
type File struct {
	// Path is its absolute path in the image.
	Path string
	Mode int64
	Data []byte
}

// Busybox builds tag FROM scratch: /bin/busybox from HostBusybox, its applets
// installed as links in /bin (so `sh`, `httpd`, `sleep` … exist), then files.
// A failed build is an error even though the engine reports it inside the
// build's progress stream, not as the answer's status.
func Busybox(ctx context.Context, eng Engine, tag string, files ...File) error {
	dockerfile := "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"
	var entries []File
	if len(files) > 0 {
		// One COPY of a folder laid out like the image's root keeps the
		// Dockerfile the same whatever the files are.
		dockerfile += "COPY root/ /\n"
		for _, f := range files {
			if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path {
				return fmt.Errorf("image %s: %q is not a clean absolute path", tag, f.Path)
			}
			entries = append(entries, File{Path: "root" + f.Path, Mode: f.Mode, Data: f.Data})
		}
	}
	bin, err := os.ReadFile(HostBusybox)
	if err != nil {
		return fmt.Errorf("image %s: busybox-static is needed (apt-get install busybox-static): %w", tag, err)
	}
	entries = append(entries, File{Path: "busybox", Mode: 0o755, Data: bin}, File{Path: "Dockerfile", Mode: 0o644, Data: []byte(dockerfile)})
	buildContext, err := tarball(entries)
	if err != nil {
		return fmt.Errorf("image %s: build context: %w", tag, err)
	}
	resp, err := eng.ImageBuild(ctx, buildContext, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true})
	if err != nil {
		return fmt.Errorf("image %s: build: %w", tag, err)
	}
	defer resp.Body.Close()
	if err := progress(resp.Body); err != nil {
		return fmt.Errorf("image %s: build: %w", tag, err)
	}
	if _, err := eng.ImageInspect(ctx, tag); err != nil {
		return fmt.Errorf("image %s: the build finished but the image is missing: %w", tag, err)
	}
	return nil
}

// EnsureBusybox builds tag with Busybox unless the engine already has it, and
// reports whether it built it. An existing tag is trusted as it is: a tag
// names one content, and a new content gets a new tag.
func EnsureBusybox(ctx context.Context, eng Engine, tag string, files ...File) (built bool, err error) {
	_, err = eng.ImageInspect(ctx, tag)
	if err == nil {
		return false, nil
	}
	if !cerrdefs.IsNotFound(err) {
		return false, fmt.Errorf("image %s: %w", tag, err)
	}
	if err := Busybox(ctx, eng, tag, files...); err != nil {
		return false, err
	}
	return true, nil
}

// Demo builds DemoTag unless the engine has it: busybox with a web root in
// /www that `httpd -f -p 8080 -h /www` serves, /healthz included (200).
func Demo(ctx context.Context, eng Engine) (tag string, err error) {
	if _, err := EnsureBusybox(ctx, eng, DemoTag,
		File{Path: "/www/index.html", Mode: 0o644, Data: []byte("<!doctype html>\n<title>paasmeter demo</title>\n<p>A replica of the paasmeter demo platform.</p>\n")},
		File{Path: "/www/healthz", Mode: 0o644, Data: []byte("ok\n")},
	); err != nil {
		return "", err
	}
	return DemoTag, nil
}

// tarball lays files out as a tar archive, the form of a build context.
func tarball(files []File) (io.Reader, error) {
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.Path, Mode: f.Mode, Size: int64(len(f.Data))}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return &buf, nil
}

// progress reads a build's JSON progress stream to its end, which is also
// the build's end, and returns the first error it reports.
func progress(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading progress: %w", err)
		}
		if msg.Error != "" {
			return errors.New(msg.Error)
		}
	}
}
