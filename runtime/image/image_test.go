package image_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/paasmeter/paasmeter/runtime/dockertest"
	"github.com/paasmeter/paasmeter/runtime/image"
)

// TestDemoServesHealthz builds the demo image (or finds it) and checks what
// the example platform relies on: httpd answers 200 on /healthz, and the
// applets are installed.
func TestDemoServesHealthz(t *testing.T) {
	cli := dockertest.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tag, err := image.Demo(ctx, cli)
	if err != nil || tag != image.DemoTag {
		t.Fatalf("Demo = %q, %v", tag, err)
	}
	if built, err := image.EnsureBusybox(ctx, cli, tag); err != nil || built {
		t.Errorf("EnsureBusybox of an existing tag = %v, %v; want no build", built, err)
	}
	c, err := cli.ContainerCreate(ctx, &container.Config{Image: tag, Cmd: []string{"httpd", "-f", "-p", "8080", "-h", "/www"}},
		&container.HostConfig{ReadonlyRootfs: true}, nil, nil, dockertest.Name(t, "demo"))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	in, err := cli.ContainerInspect(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + in.NetworkSettings.Networks["bridge"].IPAddress + ":8080/healthz"
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "ok\n" {
				t.Fatalf("GET %s = %d %q", url, resp.StatusCode, body)
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestBusyboxRefusesPathsOutsideTheRoot(t *testing.T) {
	for _, p := range []string{"www/x", "/www/../../x", "/www/"} {
		// Refused before the engine is asked anything: no engine is needed.
		err := image.Busybox(context.Background(), nil, "pmtest-bad:1", image.File{Path: p, Data: []byte("x")})
		if err == nil || !strings.Contains(err.Error(), "not a clean absolute path") {
			t.Errorf("%q: %v", p, err)
		}
	}
}
