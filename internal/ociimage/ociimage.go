// Package ociimage writes container images FROM scratch as image archives,
// with no Docker daemon and no registry: one layer of the given files and an
// image configuration, laid out as an OCI image layout in a tar that
// `ctr images import` (a Kubernetes node's containerd) and `docker load` both
// take. The paasmeter image (`make image`) and the test cluster's pause and
// busybox images are written here.
package ociimage

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one entry of the image's layer.
type File struct {
	// Path is its absolute, clean path in the image.
	Path string
	// Mode holds the permission bits.
	Mode int64
	// Data is a regular file's content.
	Data []byte
	// Link, when set, makes the entry a symbolic link to Link.
	Link string
	// Dir makes the entry a directory.
	Dir bool
}

// Config is what the image runs and how it is named.
type Config struct {
	// Ref names the image on the node (localhost/paasmeter:v1.2.0): the
	// annotation containerd imports it under, and docker load's tag.
	Ref        string
	Entrypoint []string
	Cmd        []string
	// User is the user (uid[:gid]) the image runs as unless the pod says
	// otherwise; empty is root.
	User   string
	Env    []string
	Labels map[string]string
}

// epoch is every timestamp in the image, so the same files give the same
// digests on every build.
var epoch = time.Unix(0, 0).UTC()

// Write writes the image of files and c to w as an OCI image layout tar
// (oci-layout, index.json, blobs/sha256/…) that also carries docker load's
// manifest.json. Directories a file needs are added.
func Write(w io.Writer, c Config, files []File) error {
	if c.Ref == "" {
		return errors.New("ociimage: no image reference")
	}
	layerTar, err := layer(files)
	if err != nil {
		return fmt.Errorf("ociimage %s: %w", c.Ref, err)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return fmt.Errorf("ociimage %s: layer: %w", c.Ref, err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "paasmeter ociimage"}})
	if err != nil {
		return fmt.Errorf("ociimage %s: %w", c.Ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("ociimage %s: %w", c.Ref, err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", runtime.GOARCH, v1.Time{Time: epoch}
	cf.Config = v1.Config{Entrypoint: c.Entrypoint, Cmd: c.Cmd, User: c.User, Env: c.Env, Labels: c.Labels, WorkingDir: "/"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return fmt.Errorf("ociimage %s: %w", c.Ref, err)
	}
	return archive(w, c.Ref, img, l)
}

// archive lays img out as an OCI image layout tar.
func archive(w io.Writer, ref string, img v1.Image, l v1.Layer) error {
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	configDigest, err := img.ConfigName()
	if err != nil {
		return err
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	manifestDigest, err := img.Digest()
	if err != nil {
		return err
	}
	layerDigest, err := l.Digest()
	if err != nil {
		return err
	}
	compressed, err := l.Compressed()
	if err != nil {
		return err
	}
	layerBlob, err := io.ReadAll(compressed)
	if err != nil {
		return err
	}
	tag := ref[strings.LastIndex(ref, ":")+1:]
	index, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIManifestSchema1,
			Size:      int64(len(rawManifest)),
			Digest:    manifestDigest,
			// containerd names the image it imports after the first;
			// the second is the OCI layout's own tag.
			Annotations: map[string]string{"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": tag},
			Platform:    &v1.Platform{OS: "linux", Architecture: runtime.GOARCH},
		}},
	})
	if err != nil {
		return err
	}
	blob := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
	dockerManifest, err := json.Marshal([]map[string]any{{
		"Config": blob(configDigest), "RepoTags": []string{ref}, "Layers": []string{blob(layerDigest)},
	}})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	for _, e := range []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{"manifest.json", dockerManifest},
		{blob(configDigest), rawConfig},
		{blob(manifestDigest), rawManifest},
		{blob(layerDigest), layerBlob},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: epoch}); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// layer is the uncompressed tar of files, sorted, with the directories they
// need added.
func layer(files []File) ([]byte, error) {
	entries := map[string]File{}
	for _, f := range files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			return nil, fmt.Errorf("%q is not a clean absolute path", f.Path)
		}
		if _, dup := entries[f.Path]; dup {
			return nil, fmt.Errorf("%s is given twice", f.Path)
		}
		entries[f.Path] = f
	}
	for _, f := range files {
		for d := path.Dir(f.Path); d != "/"; d = path.Dir(d) {
			if _, ok := entries[d]; !ok {
				entries[d] = File{Path: d, Mode: 0o755, Dir: true}
			}
		}
	}
	names := make([]string, 0, len(entries))
	for p := range entries {
		names = append(names, p)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range names {
		f := entries[p]
		h := &tar.Header{Name: strings.TrimPrefix(p, "/"), Mode: f.Mode, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case f.Dir:
			if len(f.Data) > 0 || f.Link != "" {
				return nil, fmt.Errorf("%s: a directory with content", p)
			}
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		case f.Link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.Link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Static returns an error unless bin is an ELF executable that needs no
// dynamic loader and no shared library: an image FROM scratch has neither,
// and a dynamic binary there fails with a bare "no such file or directory".
func Static(bin []byte) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (it names an ELF interpreter): build it with -extldflags -static")
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("reading its dynamic section: %w", err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("needs shared libraries %v: build it with -extldflags -static", libs)
	}
	return nil
}

// HostBusybox is where Debian's busybox-static puts its static busybox.
const HostBusybox = "/bin/busybox"

// Busybox is a static busybox (Debian's busybox-static) as image files:
// /bin/busybox, a link in /bin for each applet it lists (sh, sleep, …), a
// /tmp anyone may write, and /etc/passwd and /etc/group naming root.
func Busybox(bin string) ([]File, error) {
	out, err := exec.Command(bin, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list (is busybox-static installed?): %w", bin, err)
	}
	data, err := ReadStatic(bin)
	if err != nil {
		return nil, err
	}
	files := []File{
		{Path: "/bin/busybox", Mode: 0o755, Data: data},
		{Path: "/tmp", Mode: 0o1777, Dir: true},
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/:/bin/sh\n")},
		{Path: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\n")},
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" {
			files = append(files, File{Path: "/bin/" + applet, Mode: 0o777, Link: "busybox"})
		}
	}
	return files, nil
}

// ReadStatic reads the executable at name, refusing it unless Static.
func ReadStatic(name string) ([]byte, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	if err := Static(data); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return data, nil
}
