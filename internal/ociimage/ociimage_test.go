package ociimage_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/paasmeter/paasmeter/internal/ociimage"
	"github.com/paasmeter/paasmeter/internal/testenv"
)

// TestWriteReadsBackAsTheImageItWasGiven writes an image and reads it back
// through go-containerregistry's reader of `docker save` archives: the
// configuration, one layer holding exactly the files (with the directories
// they need), and the OCI layout's index naming the image for containerd.
func TestWriteReadsBackAsTheImageItWasGiven(t *testing.T) {
	c := ociimage.Config{Ref: "localhost/paasmeter:v9", Entrypoint: []string{"/paasmeter"}, Cmd: []string{"--help"},
		User: "65532:65532", Labels: map[string]string{"org.opencontainers.image.version": "v9"}}
	files := []ociimage.File{
		{Path: "/paasmeter", Mode: 0o755, Data: []byte("#!binary")},
		{Path: "/etc/ssl/x.pem", Mode: 0o644, Data: []byte("pem")},
		{Path: "/bin/sh", Mode: 0o777, Link: "busybox"},
		{Path: "/tmp", Mode: 0o1777, Dir: true},
	}
	var buf bytes.Buffer
	if err := ociimage.Write(&buf, c, files); err != nil {
		t.Fatal(err)
	}
	archive := buf.Bytes()

	tag, err := name.NewTag(c.Ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(archive)), nil }, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || strings.Join(cf.Config.Entrypoint, " ") != "/paasmeter" || strings.Join(cf.Config.Cmd, " ") != "--help" ||
		cf.Config.User != "65532:65532" || cf.Config.Labels["org.opencontainers.image.version"] != "v9" {
		t.Errorf("config %+v", cf)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %v, %v: want one", layers, err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		got[h.Name] = string(h.Typeflag) + " " + os.FileMode(h.Mode).String() + " " + h.Linkname + string(data)
	}
	want := map[string]string{
		"bin/":          "5 -rwxr-xr-x ",
		"bin/sh":        "2 -rwxrwxrwx busybox",
		"etc/":          "5 -rwxr-xr-x ",
		"etc/ssl/":      "5 -rwxr-xr-x ",
		"etc/ssl/x.pem": "0 -rw-r--r-- pem",
		"paasmeter":     "0 -rwxr-xr-x #!binary",
		"tmp/":          "5 -rwxrwxrwx ",
	}
	if len(got) != len(want) {
		t.Errorf("layer holds %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("layer entry %s: %q, want %q", k, got[k], v)
		}
	}

	// The OCI layout's index names, under the name containerd imports it
	// as, an OCI manifest of the same configuration.
	var index v1.IndexManifest
	if err := json.Unmarshal(member(t, archive, "index.json"), &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 || index.Manifests[0].Annotations["io.containerd.image.name"] != c.Ref {
		t.Fatalf("index.json %+v, want one manifest named %s", index, c.Ref)
	}
	raw := member(t, archive, "blobs/sha256/"+index.Manifests[0].Digest.Hex)
	if h, _, _ := v1.SHA256(bytes.NewReader(raw)); h != index.Manifests[0].Digest {
		t.Errorf("the manifest's blob hashes to %s, the index says %s", h, index.Manifests[0].Digest)
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	config, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.Config.Digest != config || len(m.Layers) != 1 {
		t.Errorf("OCI manifest %+v, want config %s and one layer", m, config)
	}

	// The same files give the same image.
	var again bytes.Buffer
	if err := ociimage.Write(&again, c, files); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), archive) {
		t.Error("writing the same image twice gave two archives")
	}
}

func member(t *testing.T, archive []byte, path string) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if h.Name == path {
			b, _ := io.ReadAll(tr)
			return b
		}
	}
}

func TestWriteRefusesPathsItCannotPlace(t *testing.T) {
	for _, p := range []string{"relative", "/a/../b", "/", "/a/"} {
		if err := ociimage.Write(io.Discard, ociimage.Config{Ref: "localhost/x:1"}, []ociimage.File{{Path: p, Mode: 0o644}}); err == nil {
			t.Errorf("path %q was taken", p)
		}
	}
	twice := []ociimage.File{{Path: "/a", Mode: 0o644}, {Path: "/a", Mode: 0o644}}
	if err := ociimage.Write(io.Discard, ociimage.Config{Ref: "localhost/x:1"}, twice); err == nil {
		t.Error("a path given twice was taken")
	}
}

// TestStaticTellsAStaticBinaryFromADynamicOne checks Static on the host's
// static busybox and a dynamic binary of the host, and on something that
// is no executable at all.
func TestStaticTellsAStaticBinaryFromADynamicOne(t *testing.T) {
	if _, err := os.Stat(ociimage.HostBusybox); err != nil {
		testenv.Missing(t, "no static busybox: apt-get install busybox-static (scripts/test-deps.sh installs it)")
	}
	if _, err := ociimage.ReadStatic(ociimage.HostBusybox); err != nil {
		t.Errorf("busybox-static: %v", err)
	}
	if _, err := ociimage.ReadStatic("/usr/bin/env"); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("/usr/bin/env (dynamic): %v", err)
	}
	if err := ociimage.Static([]byte("#!/bin/sh\n")); err == nil {
		t.Error("a shell script passed as a static executable")
	}
}

// TestBusyboxInstallsTheApplets builds the busybox files and finds the
// applets a pod's command line uses.
func TestBusyboxInstallsTheApplets(t *testing.T) {
	if _, err := os.Stat(ociimage.HostBusybox); err != nil {
		testenv.Missing(t, "no static busybox: apt-get install busybox-static (scripts/test-deps.sh installs it)")
	}
	files, err := ociimage.Busybox(ociimage.HostBusybox)
	if err != nil {
		t.Fatal(err)
	}
	links := map[string]string{}
	for _, f := range files {
		links[f.Path] = f.Link
	}
	for _, applet := range []string{"/bin/sh", "/bin/sleep", "/bin/echo", "/bin/hostname"} {
		if links[applet] != "busybox" {
			t.Errorf("%s: link %q, want busybox", applet, links[applet])
		}
	}
}
